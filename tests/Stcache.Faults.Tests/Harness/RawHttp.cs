using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Stcache.Faults.Tests.Harness;

/// <summary>What the server did with a raw HTTP exchange: the bytes it answered, and whether it then closed.</summary>
public sealed record RawAnswer(string Text, bool Closed)
{
    public bool IsEmpty => Text.Length == 0;

    public int? StatusCode =>
        Text.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) && Text.Length >= 12
            && int.TryParse(Text.AsSpan(9, 3), NumberStyles.None, CultureInfo.InvariantCulture, out int code)
            ? code
            : null;
}

/// <summary>
/// HTTP/1.1 over a plain socket, for what HttpClient will not do: hold a connection open, trickle bytes, or look at
/// what a server does with a connection it refuses (accept then close, reset, or answer).
/// </summary>
public sealed class RawHttp : IDisposable
{
    private const int ReceiveBytesMax = 64 * 1024;

    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[ReceiveBytesMax];
    private int _received;

    private RawHttp(Socket socket)
    {
        _socket = socket;
    }

    public static async Task<RawHttp> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, port);
            return new RawHttp(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public static string Get(string path) => $"GET {path} HTTP/1.1\r\nHost: stcache\r\n\r\n";

    /// <summary>Sends; false when the server already closed or reset the connection.</summary>
    public async Task<bool> TrySendAsync(string text)
    {
        try
        {
            await _socket.SendAsync(Encoding.ASCII.GetBytes(text), SocketFlags.None);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads until one whole response (headers and Content-Length body) has arrived, the server closed or reset the
    /// connection, or <paramref name="timeout"/> passed (then the answer holds what arrived and Closed is false).
    /// </summary>
    public async Task<RawAnswer> ReceiveResponseAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        bool closed = false;
        while (!HasWholeResponse())
        {
            if (_received == _buffer.Length)
            {
                throw new InvalidOperationException($"response larger than {ReceiveBytesMax} bytes");
            }

            try
            {
                int read = await _socket.ReceiveAsync(_buffer.AsMemory(_received), SocketFlags.None, cancel.Token);
                if (read == 0)
                {
                    closed = true;
                    break;
                }

                _received += read;
            }
            catch (SocketException)
            {
                closed = true;
                break;
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        string text = Encoding.ASCII.GetString(_buffer, 0, _received);
        _received = 0;
        return new RawAnswer(text, closed);
    }

    /// <summary>True when the server closes or resets the connection within <paramref name="timeout"/>; bytes
    /// arriving meanwhile are discarded.</summary>
    public async Task<bool> WaitClosedAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (await _socket.ReceiveAsync(_buffer, SocketFlags.None, cancel.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => _socket.Dispose();

    private bool HasWholeResponse()
    {
        string text = Encoding.ASCII.GetString(_buffer, 0, _received);
        int headerEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (headerEnd < 0)
        {
            return false;
        }

        const string lengthHeader = "\r\nContent-Length: ";
        int length = text.IndexOf(lengthHeader, StringComparison.OrdinalIgnoreCase);
        if (length < 0 || length > headerEnd)
        {
            // Chunked: whole once the last chunk arrived.
            return text.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal) || text.IndexOf("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) < 0;
        }

        int valueStart = length + lengthHeader.Length;
        int valueEnd = text.IndexOf("\r\n", valueStart, StringComparison.Ordinal);
        int bodyBytes = int.Parse(text.AsSpan(valueStart, valueEnd - valueStart), CultureInfo.InvariantCulture);
        return _received >= headerEnd + 4 + bodyBytes;
    }
}
