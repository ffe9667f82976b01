using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Stcache.Cache;
using Stcache.Resp;

namespace Stcache.Server.Resp;

/// <summary>A reply, rendered once its command has finished (so pipelined commands may finish out of order and still
/// be answered in order).</summary>
internal delegate void Reply(RespWriter writer);

/// <summary>
/// One client connection: reads whatever arrived, parses every complete command in it, runs them in order and
/// answers in order. Consecutive plain writes go to the log together (one proposal batch, or one forwarded request
/// from a follower); consecutive reads share one ReadIndex confirmation. A protocol error is answered and the
/// connection closed, as Redis does; nothing here can take down another connection or the node.
/// </summary>
internal sealed class RespConnection
{
    private const int BatchCommandsMax = 1024;
    private const int FlushBytes = 64 * 1024;

    private readonly RespServer _server;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly RespWriter _writer;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _killed = new();
    private bool _closeAfterReply;

    public RespConnection(RespServer server, long id, EndPoint? remote, EndPoint? local, PipeReader input, PipeWriter output, bool authenticated)
    {
        _server = server;
        Id = id;
        Remote = remote?.ToString() ?? "?";
        Local = local?.ToString() ?? "?";
        _input = input;
        _output = output;
        _writer = new RespWriter(output);
        Authenticated = authenticated;
        CreatedAt = DateTimeOffset.UtcNow;
        LastActiveAt = CreatedAt;
    }

    public long Id { get; }

    public string Remote { get; }

    public string Local { get; }

    public DateTimeOffset CreatedAt { get; }

    public DateTimeOffset LastActiveAt { get; private set; }

    public string LastCommand { get; private set; } = "NULL";

    public int Protocol
    {
        get => _writer.Protocol;
        set => _writer.Protocol = value;
    }

    public bool Authenticated { get; set; }

    public string Name { get; set; } = string.Empty;

    public string LibName { get; set; } = string.Empty;

    public string LibVersion { get; set; } = string.Empty;

    /// <summary>READONLY: reads are served from this node's state without a confirmation round.</summary>
    public bool StaleReads { get; set; }

    /// <summary>Commands queued since MULTI; null outside a transaction.</summary>
    public List<byte[][]>? Queued { get; set; }

    /// <summary>A command queued after MULTI was refused: EXEC answers EXECABORT.</summary>
    public bool TransactionFailed { get; set; }

    /// <summary>WATCHed keys and the version each had then (0: absent).</summary>
    public Dictionary<string, ulong> Watched { get; } = new(StringComparer.Ordinal);

    public HashSet<string> Channels { get; } = new(StringComparer.Ordinal);

    public HashSet<string> Patterns { get; } = new(StringComparer.Ordinal);

    public bool Subscribed => Channels.Count + Patterns.Count > 0;

    /// <summary>Commit index of this connection's last acknowledged write (for WAIT).</summary>
    public ulong LastWriteIndex { get; set; }

    public ReadConsistency ReadConsistency => StaleReads ? ReadConsistency.Stale : ReadConsistency.Linearizable;

    public RespServer Server => _server;

    public void Kill() => _killed.Cancel();

    public void CloseAfterReply() => _closeAfterReply = true;

    public async Task RunAsync(CancellationToken stopping)
    {
        using var lifetime = CancellationTokenSource.CreateLinkedTokenSource(stopping, _killed.Token);
        var limitsAuthenticated = RespLimits.For(_server.Options.ValueBytesMax);
        try
        {
            while (true)
            {
                ReadResult result;
                var idle = _server.Options.RespIdleTimeout;
                if (idle > TimeSpan.Zero && !Subscribed)
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(lifetime.Token);
                    timeout.CancelAfter(idle);
                    try
                    {
                        result = await _input.ReadAsync(timeout.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!lifetime.IsCancellationRequested)
                    {
                        return; // idle too long: Redis closes silently
                    }
                }
                else
                {
                    result = await _input.ReadAsync(lifetime.Token).ConfigureAwait(false);
                }

                var buffer = result.Buffer;
                var batch = new List<byte[][]>();
                RespProtocolError? error = null;
                bool more = false;
                while (true)
                {
                    // Before AUTH, Redis's small limits apply, and AUTH must run before the next command is parsed.
                    var limits = Authenticated ? limitsAuthenticated : new RespLimits(limitsAuthenticated.BulkBytesMax, limitsAuthenticated.QueryBufferBytesMax, authenticated: false);
                    var status = RespParser.TryParse(buffer, limits, out var consumed, out var arguments, out error);
                    if (status == ParseStatus.NeedMoreData || status == ParseStatus.Malformed)
                    {
                        break;
                    }

                    buffer = buffer.Slice(consumed);
                    if (arguments.Length > 0)
                    {
                        batch.Add(arguments);
                    }

                    if (batch.Count >= BatchCommandsMax || (!Authenticated && batch.Count > 0))
                    {
                        more = !buffer.IsEmpty;
                        break;
                    }
                }

                // Examined everything unless complete commands are left for the next round.
                _input.AdvanceTo(buffer.Start, more ? buffer.Start : buffer.End);
                LastActiveAt = DateTimeOffset.UtcNow;
                await ExecuteAsync(batch, lifetime.Token).ConfigureAwait(false);
                if (error is not null)
                {
                    RespLog.ProtocolError(_server.Logger, Id, Remote, error.Message);
                    if (error.ReplyBeforeClose)
                    {
                        await WriteAsync(w => w.Error(error.Message), lifetime.Token).ConfigureAwait(false);
                    }

                    return;
                }

                if (_closeAfterReply || (result.IsCompleted && !more))
                {
                    return;
                }
            }
        }
        finally
        {
            await _input.CompleteAsync().ConfigureAwait(false);
            await _output.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Runs a batch in order: groups of plain writes together, groups of reads behind one confirmation.</summary>
    public async Task ExecuteAsync(IReadOnlyList<byte[][]> batch, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int i = 0;
            while (i < batch.Count && !_closeAfterReply)
            {
                var (command, refusal) = Admit(batch[i]);
                if (refusal is not null)
                {
                    refusal(_writer);
                    i++;
                }
                else if (command!.Kind == CommandKind.Write && !RespCommands.NeedsRead(batch[i]))
                {
                    i = await RunWritesAsync(batch, i, cancellationToken).ConfigureAwait(false);
                }
                else if (command.Kind == CommandKind.Read)
                {
                    i = await RunReadsAsync(batch, i, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    var reply = await _server.Commands.RunOneAsync(this, command, batch[i], cancellationToken).ConfigureAwait(false);
                    reply(_writer);
                    i++;
                }

                if (_output.UnflushedBytes > FlushBytes)
                {
                    await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }

            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Null command with a refusal to write, or the command to run. Checks in Redis's order: existence,
    /// arity, authentication, then the transaction and subscriber contexts.</summary>
    private (RespCommand? Command, Reply? Refusal) Admit(byte[][] arguments)
    {
        Interlocked.Increment(ref _server.CommandsProcessed);
        string name = Encoding.UTF8.GetString(arguments[0]).ToUpperInvariant();
        LastCommand = name.ToLowerInvariant();
        var command = _server.Commands.Find(name);
        Reply? refusal = null;
        if (command is null)
        {
            refusal = RespCommands.UnknownCommand(arguments);
        }
        else if (command.Arity > 0 ? arguments.Length != command.Arity : arguments.Length < -command.Arity)
        {
            refusal = w => w.Error($"wrong number of arguments for '{command.Name.ToLowerInvariant()}' command");
        }
        else if (!Authenticated && !command.NoAuth)
        {
            refusal = w => w.CodedError("NOAUTH Authentication required.");
        }

        if (Queued is not null && command?.Name is not ("EXEC" or "DISCARD" or "MULTI" or "WATCH" or "QUIT" or "RESET"))
        {
            if (refusal is not null)
            {
                TransactionFailed = true;
                return (null, refusal);
            }

            Queued.Add(arguments);
            return (null, w => w.SimpleString("QUEUED"));
        }

        if (refusal is not null)
        {
            return (null, refusal);
        }

        if (Subscribed && Protocol < 3 && command!.Name is not ("SUBSCRIBE" or "PSUBSCRIBE" or "UNSUBSCRIBE" or "PUNSUBSCRIBE" or "PING" or "QUIT" or "RESET"))
        {
            return (null, w => w.Error($"Can't execute '{command.Name.ToLowerInvariant()}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"));
        }

        return (command, null);
    }

    private async Task<int> RunWritesAsync(IReadOnlyList<byte[][]> batch, int start, CancellationToken cancellationToken)
    {
        var plans = new List<WritePlan>();
        int i = start;
        for (; i < batch.Count; i++)
        {
            if (i > start)
            {
                var next = _server.Commands.Find(Encoding.UTF8.GetString(batch[i][0]).ToUpperInvariant());
                if (next is null || next.Kind != CommandKind.Write || !HasArity(batch[i], next) || RespCommands.NeedsRead(batch[i]) || Queued is not null)
                {
                    break;
                }

                Interlocked.Increment(ref _server.CommandsProcessed);
            }

            plans.Add(_server.Commands.Find(Encoding.UTF8.GetString(batch[i][0]).ToUpperInvariant())!.Plan!(this, batch[i]));
        }

        foreach (var reply in await RunPlansAsync(plans, cancellationToken).ConfigureAwait(false))
        {
            reply(_writer);
        }

        return i;
    }

    /// <summary>Runs planned writes as one batch; their replies, in order.</summary>
    public async Task<List<Reply>> RunPlansAsync(List<WritePlan> plans, CancellationToken cancellationToken)
    {
        var commands = plans.SelectMany(p => p.Commands).ToList();
        var outcomes = commands.Count == 0 ? [] : await _server.Service.WriteBatchAsync(commands, cancellationToken).ConfigureAwait(false);
        var replies = new List<Reply>(plans.Count);
        int offset = 0;
        foreach (var plan in plans)
        {
            var mine = new ArraySegment<WriteOutcome>(outcomes, offset, plan.Commands.Count);
            offset += plan.Commands.Count;
            foreach (var outcome in mine)
            {
                if (outcome.Status == WriteStatus.Applied && outcome.Result.Version > LastWriteIndex)
                {
                    LastWriteIndex = outcome.Result.Version;
                }
            }

            int failed = Array.FindIndex(mine.ToArray(), o => o.Status != WriteStatus.Applied);
            replies.Add(failed >= 0 ? RespCommands.WriteFailure(mine[failed]) : plan.Finish(mine));
        }

        return replies;
    }

    /// <summary>Whether a command has a number of arguments its arity allows (checked for the first of a group by Admit).</summary>
    private static bool HasArity(byte[][] arguments, RespCommand command) =>
        command.Arity > 0 ? arguments.Length == command.Arity : arguments.Length >= -command.Arity;

    private async Task<int> RunReadsAsync(IReadOnlyList<byte[][]> batch, int start, CancellationToken cancellationToken)
    {
        int end = start + 1;
        while (end < batch.Count && Queued is null)
        {
            var next = _server.Commands.Find(Encoding.UTF8.GetString(batch[end][0]).ToUpperInvariant());
            if (next is null || next.Kind != CommandKind.Read || !HasArity(batch[end], next) || (!Authenticated && !next.NoAuth))
            {
                break;
            }

            end++;
        }

        var outcome = await _server.Service.ReadBarrierAsync(ReadConsistency, cancellationToken).ConfigureAwait(false);
        for (int i = start; i < end; i++)
        {
            if (i > start)
            {
                Interlocked.Increment(ref _server.CommandsProcessed);
            }

            if (!outcome.Succeeded)
            {
                RespCommands.ReadFailure(outcome)(_writer);
                continue;
            }

            _server.Commands.Find(Encoding.UTF8.GetString(batch[i][0]).ToUpperInvariant())!.Read!(this, batch[i])(_writer);
        }

        return end;
    }

    /// <summary>Writes one reply outside a batch (errors before closing).</summary>
    private async Task WriteAsync(Reply reply, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            reply(_writer);
            await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public void PushMessage(string channel, byte[] message) => Push(w =>
    {
        w.Push(3);
        w.Bulk("message");
        w.Bulk(channel);
        w.Bulk(message);
    });

    public void PushPatternMessage(string pattern, string channel, byte[] message) => Push(w =>
    {
        w.Push(4);
        w.Bulk("pmessage");
        w.Bulk(pattern);
        w.Bulk(channel);
        w.Bulk(message);
    });

    /// <summary>
    /// A message from another connection's PUBLISH or from the node itself, written between replies in the order it
    /// was published. A subscriber that falls this far behind is disconnected, as Redis does past its pub/sub
    /// output buffer limit.
    /// </summary>
    private void Push(Reply reply)
    {
        if (!_pushes.Writer.TryWrite(reply))
        {
            Kill();
            return;
        }

        if (Interlocked.CompareExchange(ref _pumping, 1, 0) == 0)
        {
            _ = Task.Run(PumpPushesAsync);
        }
    }

    private readonly System.Threading.Channels.Channel<Reply> _pushes =
        System.Threading.Channels.Channel.CreateBounded<Reply>(new System.Threading.Channels.BoundedChannelOptions(16_384) { SingleReader = true });

    private int _pumping;

    private async Task PumpPushesAsync()
    {
        try
        {
            while (true)
            {
                await _writeLock.WaitAsync(_killed.Token).ConfigureAwait(false);
                try
                {
                    while (_pushes.Reader.TryRead(out var reply))
                    {
                        reply(_writer);
                    }

                    await _output.FlushAsync(_killed.Token).ConfigureAwait(false);
                }
                finally
                {
                    _writeLock.Release();
                }

                Volatile.Write(ref _pumping, 0);
                if (!_pushes.Reader.TryPeek(out _) || Interlocked.CompareExchange(ref _pumping, 1, 0) != 0)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or IOException or ObjectDisposedException)
        {
            // The subscriber is gone; its registrations go with it.
        }
    }
}
