using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Stcache.Faults.Tests.Workload;

/// <summary>A RESP2 reply, flattened: what the history records and the model predicts.</summary>
public sealed record RespReply(char Type, string? Text, IReadOnlyList<RespReply>? Items = null)
{
    public static readonly RespReply Nil = new('_', null);

    public static RespReply Ok { get; } = new('+', "OK");

    public static RespReply Integer(long value) => new(':', value.ToString(CultureInfo.InvariantCulture));

    public static RespReply Bulk(string? value) => value is null ? Nil : new RespReply('$', value);

    public bool IsError => Type == '-';

    /// <summary>The error's code: its first word (ERR, CLUSTERDOWN, UNCERTAIN, ...).</summary>
    public string ErrorCode => IsError ? (Text ?? string.Empty).Split(' ', 2)[0] : string.Empty;

    public override string ToString() => Type switch
    {
        '_' => "nil",
        '*' => "[" + string.Join(", ", Items!) + "]",
        ':' => Text!,
        '$' => "'" + Text + "'",
        _ => Type + Text,
    };

    public bool Same(RespReply other) =>
        Type == other.Type && Text == other.Text &&
        (Items is null ? other.Items is null : other.Items is not null && Items.Count == other.Items.Count && Items.Zip(other.Items).All(p => p.First.Same(p.Second)));
}

/// <summary>The connection failed before the command could have been sent: certainly not applied.</summary>
public sealed class RespConnectException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// A deliberately small RESP2 client over one TCP connection: it sends commands (pipelined, as one write) and reads
/// their replies, nothing more. No retries, no reconnection, no redirection: every outcome reaches the caller as it
/// happened, which is what a history needs. Any error leaves the connection unusable; the caller disposes it.
/// </summary>
public sealed class RespClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    private RespClient(Socket socket) => _socket = socket;

    public static async Task<RespClient> ConnectAsync(int port, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cancellationToken);
            return new RespClient(socket);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            throw new RespConnectException("connect: " + e.Message, e);
        }
    }

    /// <summary>Sends every command in one write, then reads one reply per command.</summary>
    public async Task<RespReply[]> ExecuteAsync(IReadOnlyList<string[]> commands, CancellationToken cancellationToken)
    {
        var request = new ArrayBufferWriter<byte>();
        foreach (var command in commands)
        {
            Append(request, "*" + command.Length.ToString(CultureInfo.InvariantCulture) + "\r\n");
            foreach (string argument in command)
            {
                byte[] bytes = Encoding.UTF8.GetBytes(argument);
                Append(request, "$" + bytes.Length.ToString(CultureInfo.InvariantCulture) + "\r\n");
                request.Write(bytes);
                Append(request, "\r\n");
            }
        }

        await _socket.SendAsync(request.WrittenMemory, SocketFlags.None, cancellationToken);
        var replies = new RespReply[commands.Count];
        for (int i = 0; i < replies.Length; i++)
        {
            replies[i] = await ReadReplyAsync(cancellationToken);
        }

        return replies;
    }

    public async Task<RespReply> ExecuteAsync(string[] command, CancellationToken cancellationToken) =>
        (await ExecuteAsync([command], cancellationToken))[0];

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }

    private static void Append(ArrayBufferWriter<byte> writer, string text) => writer.Write(Encoding.ASCII.GetBytes(text));

    private async Task<RespReply> ReadReplyAsync(CancellationToken cancellationToken)
    {
        string line = await ReadLineAsync(cancellationToken);
        if (line.Length == 0)
        {
            throw new IOException("empty reply line");
        }

        char type = line[0];
        string rest = line[1..];
        switch (type)
        {
            case '+' or '-' or ':':
                return new RespReply(type, rest);
            case '$':
                {
                    int length = int.Parse(rest, CultureInfo.InvariantCulture);
                    if (length < 0)
                    {
                        return RespReply.Nil;
                    }

                    byte[] body = await ReadExactAsync(length + 2, cancellationToken);
                    return new RespReply('$', Encoding.UTF8.GetString(body, 0, length));
                }

            case '*':
                {
                    int count = int.Parse(rest, CultureInfo.InvariantCulture);
                    if (count < 0)
                    {
                        return RespReply.Nil;
                    }

                    var items = new RespReply[count];
                    for (int i = 0; i < count; i++)
                    {
                        items[i] = await ReadReplyAsync(cancellationToken);
                    }

                    return new RespReply('*', null, items);
                }

            default:
                throw new IOException("unexpected reply: " + line);
        }
    }

    private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            if (newline > _start && _buffer[newline - 1] == '\r')
            {
                string line = Encoding.UTF8.GetString(_buffer, _start, newline - 1 - _start);
                _start = newline + 1;
                return line;
            }

            await FillAsync(cancellationToken);
        }
    }

    private async Task<byte[]> ReadExactAsync(int count, CancellationToken cancellationToken)
    {
        byte[] result = new byte[count];
        int copied = 0;
        while (copied < count)
        {
            if (_start == _end)
            {
                await FillAsync(cancellationToken);
            }

            int take = Math.Min(count - copied, _end - _start);
            Array.Copy(_buffer, _start, result, copied, take);
            _start += take;
            copied += take;
        }

        return result;
    }

    private async Task FillAsync(CancellationToken cancellationToken)
    {
        if (_start > 0)
        {
            Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            throw new IOException("reply line longer than the buffer");
        }

        int read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
        if (read == 0)
        {
            throw new IOException("connection closed by the server");
        }

        _end += read;
    }
}
