using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Runtime.CompilerServices;
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
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
    Justification = "_killed has no timer and _writeLock no wait handle; Kill() may come from another thread after the connection ended")]
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

    // Reused by each batch (batches of one connection run one at a time, under _writeLock).
    private readonly List<Request> _batch = [];
    private readonly List<ParsedCommand> _reads = [];
    private readonly List<WriteRequest> _writes = [];

    public RespConnection(RespServer server, long id, EndPoint? remote, EndPoint? local, PipeReader input, PipeWriter output, bool authenticated)
    {
        _server = server;
        StaleReads = server.Options.RespReadOnly;
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

    /// <summary>WATCHed keys (by name) with their bytes and the version each had then (0: absent).</summary>
    public Dictionary<string, (byte[] Key, ulong Version)> Watched { get; } = new(StringComparer.Ordinal);

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
                var batch = _batch;
                batch.Clear();
                RespProtocolError? error = null;
                bool more = false;
                if (TryHoldForLeadingGets(buffer, limitsAuthenticated.BulkBytesMax))
                {
                    try
                    {
                        // One confirmation for the GETs at the head: they all arrived before it started, so each
                        // sees every write acknowledged before it was sent. A stale read needs none.
                        var barrier = StaleReads
                            ? ReadOutcome.Ok
                            : await _server.Service.ReadBarrierAsync(ReadConsistency.Linearizable, lifetime.Token).ConfigureAwait(false);
                        buffer = AnswerLeadingGets(buffer, limitsAuthenticated.BulkBytesMax, barrier);
                    }
                    finally
                    {
                        _writeLock.Release();
                    }
                }

                while (true)
                {
                    if (Authenticated && TryMatchSet(buffer.FirstSpan, limitsAuthenticated.BulkBytesMax, out var key, out var value, out int length))
                    {
                        // A plain SET becomes its log entry here, from the request's bytes.
                        var span = buffer.FirstSpan;
                        batch.Add(new Request(null, WriteRequest.PlainSet(span[key], span[value])));
                        buffer = buffer.Slice(length);
                    }
                    else
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
                            batch.Add(new Request(arguments, null));
                        }
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
                        await WriteAsync(ErrorReply(error.Message), lifetime.Token).ConfigureAwait(false);
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

    // A method of its own: a lambda in RunAsync's loop capturing `error` would allocate its closure on every read.
    private static Reply ErrorReply(string message) => w => w.Error(message);

    /// <summary>
    /// Whether the GET shortcut applies to what arrived: it starts with a whole plain GET (<see cref="TryMatchGet"/>)
    /// on a connection that is authenticated, not in MULTI and not subscribed. When it does, the caller holds
    /// <c>_writeLock</c> until <see cref="AnswerLeadingGets"/> returned; a connection whose lock is busy (a push
    /// being written) takes the general path.
    /// </summary>
    private bool TryHoldForLeadingGets(in ReadOnlySequence<byte> buffer, long keyBytesMax) =>
        Authenticated && Queued is null && !Subscribed && !_closeAfterReply
        && TryMatchGet(buffer.FirstSpan, keyBytesMax, out _, out _) && _writeLock.Wait(0);

    /// <summary>
    /// The common case without the general path's objects: the GETs at the head of what arrived, each in its exact
    /// multibulk form, are answered straight from the request bytes at <paramref name="barrier"/>'s read time (for a
    /// stale read, <see cref="ReadOutcome.Ok"/>: this node's applied log time), the value copied from the cache into
    /// the reply; a failed barrier gives each the general path's error. Returns what is left for the general path:
    /// anything else (another command, an inline or partial one) stops it, as does a batch's worth of replies, so
    /// that the answers stay in order and are flushed as usual.
    /// </summary>
    private ReadOnlySequence<byte> AnswerLeadingGets(ReadOnlySequence<byte> buffer, long keyBytesMax, ReadOutcome barrier)
    {
        var service = _server.Service;
        var cache = service.Host.Cache;
        var sink = new BulkSink(_writer);
        var failure = barrier.Succeeded ? null : RespCommands.ReadFailure(barrier);
        for (int served = 0; served < BatchCommandsMax && _output.UnflushedBytes <= FlushBytes; served++)
        {
            var span = buffer.FirstSpan;
            if (!TryMatchGet(span, keyBytesMax, out int keyStart, out int keyLength))
            {
                break;
            }

            Interlocked.Increment(ref _server.CommandsProcessed);
            LastCommand = "get";
            if (failure is not null)
            {
                failure(_writer);
            }
            else
            {
                switch (cache.ReadString(span.Slice(keyStart, keyLength), service.ReadTime(barrier), ref sink))
                {
                    case StringRead.Missing:
                        _writer.Null();
                        break;
                    case StringRead.WrongType:
                        _writer.CodedError(RedisErrors.WrongType);
                        break;
                }
            }

            buffer = buffer.Slice(keyStart + keyLength + 2);
        }

        return buffer;
    }

    /// <summary>Whether <paramref name="s"/> starts with a whole <c>*2\r\n$3\r\nGET\r\n$n\r\nkey\r\n</c> (the name in any
    /// case, n without leading zeros and at most <paramref name="keyBytesMax"/>). Anything else, valid or not, is
    /// left to the general parser.</summary>
    internal static bool TryMatchGet(ReadOnlySpan<byte> s, long keyBytesMax, out int keyStart, out int keyLength)
    {
        keyStart = 0;
        keyLength = 0;
        int at = 13;
        if (!s.StartsWith("*2\r\n$3\r\n"u8) || !IsName(s, 'g', 'e', 't') || !TryMatchBulk(s, ref at, keyBytesMax, out var key))
        {
            return false;
        }

        (keyStart, keyLength) = key.GetOffsetAndLength(s.Length);
        return true;
    }

    /// <summary>Whether <paramref name="s"/> starts with a whole <c>*3\r\n$3\r\nSET\r\n$n\r\nkey\r\n$m\r\nvalue\r\n</c>
    /// (the name in any case, n and m without leading zeros and at most <paramref name="bulkBytesMax"/>), a SET with
    /// no option: <paramref name="length"/> is its length. Anything else, valid or not, is left to the general
    /// parser, which would read this command as these same three arguments.</summary>
    internal static bool TryMatchSet(ReadOnlySpan<byte> s, long bulkBytesMax, out Range key, out Range value, out int length)
    {
        key = value = default;
        length = 0;
        int at = 13;
        if (!s.StartsWith("*3\r\n$3\r\n"u8) || !IsName(s, 's', 'e', 't')
            || !TryMatchBulk(s, ref at, bulkBytesMax, out key) || !TryMatchBulk(s, ref at, bulkBytesMax, out value))
        {
            return false;
        }

        length = at;
        return true;
    }

    /// <summary>Whether the three-letter command name at offset 8 (after <c>*N\r\n$3\r\n</c>) is the given one in
    /// any case, followed by CRLF.</summary>
    private static bool IsName(ReadOnlySpan<byte> s, char first, char second, char third) =>
        s.Length >= 13 && (s[8] | 0x20) == first && (s[9] | 0x20) == second && (s[10] | 0x20) == third
        && s[11] == '\r' && s[12] == '\n';

    /// <summary>Reads a whole <c>$n\r\n</c> + n bytes + <c>\r\n</c> at <paramref name="at"/> (n without leading zeros,
    /// at most nine digits and <paramref name="bytesMax"/>) and moves <paramref name="at"/> past it.</summary>
    private static bool TryMatchBulk(ReadOnlySpan<byte> s, ref int at, long bytesMax, out Range bulk)
    {
        bulk = default;
        int first = at + 1;
        if (first >= s.Length || s[at] != '$')
        {
            return false;
        }

        int i = first;
        long length = 0;
        for (; i < s.Length && i < first + 9 && (uint)(s[i] - '0') <= 9; i++)
        {
            length = (length * 10) + (s[i] - '0');
        }

        bool digits = i > first && (s[first] != '0' || i == first + 1);
        if (!digits || length > bytesMax || i + 1 >= s.Length || s[i] != '\r' || s[i + 1] != '\n')
        {
            return false;
        }

        int start = i + 2;
        if (s.Length - start < length + 2 || s[start + (int)length] != '\r' || s[start + (int)length + 1] != '\n')
        {
            return false;
        }

        bulk = start..(start + (int)length);
        at = start + (int)length + 2;
        return true;
    }

    /// <summary>Writes a value the cache hands over inside its lock as a bulk reply.</summary>
    private readonly struct BulkSink(RespWriter writer) : IValueSink
    {
        public void Value(ReadOnlySpan<byte> value) => writer.Bulk(value);
    }

    /// <summary>A command as parsed: its arguments, or a plain SET already made into its write
    /// (<see cref="TryMatchSet"/>).</summary>
    private readonly record struct Request(byte[][]? Arguments, WriteRequest? PlainSet)
    {
        /// <summary>The arguments, made again for a plain SET that takes the general path (queued after MULTI,
        /// refused before AUTH).</summary>
        public byte[][] ArgumentsOrRebuilt => Arguments ?? PlainSet!.Argv![0];
    }

    /// <summary>Whether a data command would pass <see cref="Admit"/>'s checks of the connection's state now.</summary>
    private bool AdmitsData => Authenticated && Queued is null && !(Subscribed && Protocol < 3);

    /// <summary>Runs a batch in order: groups of data writes together, groups of data reads behind one confirmation.
    /// A pooled state machine: one batch, run on every read that completes a command, would otherwise allocate it
    /// each time it waits (every write does).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ExecuteAsync(List<Request> batch, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            int i = 0;
            while (i < batch.Count && !_closeAfterReply)
            {
                List<WriteRequest>? requests = null;
                if (batch[i].PlainSet is { } set && AdmitsData)
                {
                    // What Admit does for a SET the connection's state lets through.
                    Interlocked.Increment(ref _server.CommandsProcessed);
                    LastCommand = "set";
                    requests = CollectWrites(batch, ref i, set);
                }
                else
                {
                    byte[][] arguments = batch[i].ArgumentsOrRebuilt;
                    long parsedAt = _server.Service.LogTime();
                    var (command, parsed, refusal) = Admit(arguments, parsedAt);
                    if (refusal is not null)
                    {
                        refusal(_writer);
                        i++;
                    }
                    else if (command is not null)
                    {
                        var reply = await command.Run!(this, arguments, cancellationToken).ConfigureAwait(false);
                        reply(_writer);
                        i++;
                    }
                    else if (parsed.IsWrite)
                    {
                        requests = CollectWrites(batch, ref i, WriteRequest.Redis(arguments, parsed.Write, parsedAt));
                    }
                    else
                    {
                        i = await RunReadsAsync(batch, i, parsed, cancellationToken).ConfigureAwait(false);
                    }
                }

                if (requests is not null)
                {
                    // Awaited here, not in a frame of its own: one state machine less per write.
                    WriteOutcome[] outcomes;
                    if (_server.Service.TryStartHere(requests, cancellationToken, out var here))
                    {
                        await here.WaitAsync().ConfigureAwait(false);
                        outcomes = await _server.Service.FinishHereAsync(here).ConfigureAwait(false);
                    }
                    else
                    {
                        outcomes = await _server.Service.WriteBatchAsync(requests, cancellationToken).ConfigureAwait(false);
                    }

                    requests.Clear();
                    AnswerWrites(outcomes);
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

    /// <summary>
    /// A command of this layer's table to run, a parsed data command, or a refusal to write. Checks in Redis's
    /// order: existence and arity (the cache's parser checks a data command's), authentication, then the
    /// transaction and subscriber contexts.
    /// </summary>
    private (RespCommand? Command, ParsedCommand Parsed, Reply? Refusal) Admit(byte[][] arguments, long parsedAt)
    {
        Interlocked.Increment(ref _server.CommandsProcessed);
        var resolved = _server.Commands.Resolve(arguments[0]);
        string name = resolved.Upper;
        LastCommand = resolved.Lower;
        var command = resolved.Command;
        ParsedCommand parsed = default;
        Reply? refusal = null;
        if (command is null)
        {
            if (resolved.IsData)
            {
                parsed = RespCommands.ParseData(arguments, parsedAt);
                if (parsed.Error is { } error)
                {
                    refusal = RespCommands.Render(error);
                }
            }
            else
            {
                refusal = RespCommands.UnknownCommand(arguments);
            }
        }
        else if (command.Arity > 0 ? arguments.Length != command.Arity : arguments.Length < -command.Arity)
        {
            refusal = ArityError(command.Name);
        }

        if (!Authenticated && !(command?.NoAuth ?? false) && (refusal is null || parsed.Error is not null))
        {
            refusal = w => w.CodedError("NOAUTH Authentication required.");
        }

        if (Queued is not null && command?.Name is not ("EXEC" or "DISCARD" or "MULTI" or "WATCH" or "QUIT" or "RESET"))
        {
            if (refusal is null && command is not null)
            {
                // Only the cache's commands can join the transaction's log entry.
                refusal = NotInTransaction(command.Name);
            }

            if (refusal is not null)
            {
                TransactionFailed = true;
                return (null, default, refusal);
            }

            Queued.Add(arguments);
            return (null, default, w => w.SimpleString("QUEUED"));
        }

        if (refusal is not null)
        {
            return (null, default, refusal);
        }

        string shown = command?.Name ?? name;
        if (Subscribed && Protocol < 3 && shown is not ("SUBSCRIBE" or "PSUBSCRIBE" or "UNSUBSCRIBE" or "PUNSUBSCRIBE" or "PING" or "QUIT" or "RESET"))
        {
            return (null, default, NotWhileSubscribed(shown));
        }

        return (command, parsed, null);
    }

    // Refusals made by methods of their own: a lambda in Admit capturing its locals would make Admit allocate their
    // closure on every command, refused or not.
    private static Reply ArityError(string name) => w => w.Error($"wrong number of arguments for '{name.ToLowerInvariant()}' command");

    private static Reply NotInTransaction(string name) => w => w.Error($"Command '{name.ToLowerInvariant()}' is not allowed inside a transaction in stcache");

    private static Reply NotWhileSubscribed(string name) =>
        w => w.Error($"Can't execute '{name.ToLowerInvariant()}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");

    /// <summary>The next command parsed if it is a data command of the given kind that Admit would let through
    /// (never a plain SET, which is parsed already).</summary>
    private bool TryNextData(byte[][]? arguments, bool write, long parsedAt, out ParsedCommand parsed)
    {
        parsed = default;
        if (arguments is null || !AdmitsData
            || _server.Commands.Resolve(arguments[0]) is not { Command: null, IsData: true } resolved)
        {
            return false;
        }

        LastCommand = resolved.Lower;

        parsed = RespCommands.ParseData(arguments, parsedAt);
        return parsed.Error is null && parsed.IsWrite == write;
    }

    /// <summary>The write at <paramref name="i"/> and the data writes right after it, as one proposal batch;
    /// <paramref name="i"/> moves past them. The list is the connection's, reused by every batch.</summary>
    private List<WriteRequest> CollectWrites(List<Request> batch, ref int i, WriteRequest first)
    {
        var requests = _writes;
        requests.Clear();
        requests.Add(first);
        for (i++; i < batch.Count; i++)
        {
            WriteRequest next;
            if (batch[i].PlainSet is { } set)
            {
                if (!AdmitsData)
                {
                    break;
                }

                LastCommand = "set";
                next = set;
            }
            else
            {
                long nextAt = _server.Service.LogTime();
                var arguments = batch[i].Arguments;
                if (!TryNextData(arguments, write: true, nextAt, out var parsed))
                {
                    break;
                }

                next = WriteRequest.Redis(arguments!, parsed.Write, nextAt);
            }

            Interlocked.Increment(ref _server.CommandsProcessed);
            requests.Add(next);
        }

        return requests;
    }

    private void AnswerWrites(WriteOutcome[] outcomes)
    {
        bool applied = false;
        foreach (var outcome in outcomes)
        {
            applied |= outcome.Status == WriteStatus.Applied;
            RespCommands.Write(_writer, outcome);
        }

        if (applied)
        {
            LastWriteIndex = _server.Service.Host.Cache.AppliedIndex.Value;
        }
    }

    private async Task<int> RunReadsAsync(List<Request> batch, int start, ParsedCommand first, CancellationToken cancellationToken)
    {
        var reads = _reads;
        reads.Clear();
        reads.Add(first);
        int end = start + 1;
        for (; end < batch.Count && TryNextData(batch[end].Arguments, write: false, _server.Service.LogTime(), out var parsed); end++)
        {
            Interlocked.Increment(ref _server.CommandsProcessed);
            reads.Add(parsed);
        }

        var outcome = await _server.Service.ReadBarrierAsync(ReadConsistency, cancellationToken).ConfigureAwait(false);
        if (!outcome.Succeeded)
        {
            var failure = RespCommands.ReadFailure(outcome);
            for (int i = 0; i < reads.Count; i++)
            {
                failure(_writer);
            }
        }
        else
        {
            foreach (var read in reads)
            {
                RespCommands.Write(_writer, _server.Commands.Read(read, outcome));
                if (_output.UnflushedBytes > FlushBytes)
                {
                    // Big replies leave as they are made: a pipeline of GETs of large values from a client that
                    // reads slowly holds about one reply here, not the whole batch's (up to 1,024 of them).
                    await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }

        reads.Clear();
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
