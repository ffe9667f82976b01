using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Logging;

namespace Stcache.Server.Resp;

/// <summary>
/// The RESP connections' own readiness loop on Linux, as Redis's: one thread waits in <c>epoll_wait</c>
/// (level-triggered) for every plain-text RESP socket, reads what a ready socket holds with one non-blocking
/// <c>recv</c>, and resumes the connection's read on that thread, which parses, executes and answers with one
/// non-blocking <c>send</c>; the connection then waits again without a syscall.
/// <para>Why not the runtime's sockets: <c>Socket.ReceiveAsync</c> always tries <c>recv</c> before waiting for
/// readiness (its epoll is edge-triggered, so it cannot know the socket is empty), and with one request in flight per
/// connection the next request has never arrived when the reply has just been sent: two <c>recv</c> per request,
/// one of which fails. Level triggering tells the loop when a socket has data, so each request costs one.</para>
/// <para>A connection that is busy (a write waiting for its commit) keeps being read into its buffer while it has
/// room, as Redis fills a client's query buffer; past <see cref="EpollConnection.PauseBytes"/> unread, or with no
/// room while the connection still holds its data, the socket leaves the loop's read interest until the connection
/// reads again. A reply that does not fit in the socket's send buffer waits for <c>EPOLLOUT</c>.</para>
/// <para>Only for x64 Linux (the <c>epoll_event</c> layout is packed there) and plain text; TLS connections, and
/// every connection elsewhere or with <c>STCACHE_RESP_EPOLL=0</c>, use the runtime's sockets through a stream.
/// <c>STCACHE_RESP_EPOLL=N</c> runs N loops, each with its share of the connections.</para>
/// </summary>
internal sealed unsafe partial class EpollLoop : IDisposable
{
    public const string Switch = "STCACHE_RESP_EPOLL";

    internal const uint In = 0x001;
    internal const uint Out = 0x004;
    private const uint Err = 0x008;
    private const uint Hup = 0x010;
    internal const uint RdHup = 0x2000;
    private const int CtlAdd = 1;
    private const int CtlDel = 2;
    private const int CtlMod = 3;
    private const int CloseOnExec = 0x80000;
    private const int Interrupted = 4;
    private const int EventsMax = 256;

    /// <summary>How often the loop looks at its stop flag while no socket is ready.</summary>
    private const int StopCheckMs = 500;

    private readonly int _epoll;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<ulong, EpollConnection> _connections = new();
    private readonly Thread _thread;
    private readonly Lock _closeGate = new();
    private long _nextKey;
    private volatile bool _stopping;
    private bool _closed;

    private EpollLoop(int epoll, ILogger logger, int number)
    {
        _epoll = epoll;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = number == 0 ? "resp-epoll" : $"resp-epoll-{number}" };
        _thread.Start();
    }

    /// <summary>How many loops <see cref="Switch"/> asks for: by default one per two cores (one on a two-core
    /// machine, where a second cost more CPU per request; each loop runs its connections' commands, so a larger
    /// machine needs more than one to use its cores), 0 for none (<c>0</c> or <c>false</c>), or the number given
    /// (at most 64).</summary>
    public static int Requested(string? value) =>
        value is null || value.Length == 0 ? DefaultCount
        : value is "false" ? 0
        : int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) ? Math.Min(n, 64)
        : DefaultCount;

    /// <summary>One loop per two cores, at least one and at most 64.</summary>
    public static int DefaultCount => Math.Clamp(Environment.ProcessorCount / 2, 1, 64);

    /// <summary>The loops (connections are spread over them in turn), or null where they do not apply (not x64
    /// Linux, or <see cref="Switch"/><c>=0</c>): the caller then uses the runtime's sockets.</summary>
    public static EpollLoop[]? TryStart(ILogger logger)
    {
        int count = Requested(Environment.GetEnvironmentVariable(Switch));
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64 || count == 0)
        {
            return null;
        }

        var loops = new List<EpollLoop>();
        for (int i = 0; i < count; i++)
        {
            int epoll = EpollCreate1(CloseOnExec);
            if (epoll < 0)
            {
                break;
            }

            loops.Add(new EpollLoop(epoll, logger, i));
        }

        return loops.Count == 0 ? null : [.. loops];
    }

    /// <summary>Takes over <paramref name="socket"/> (connected, never used asynchronously): non-blocking, watched by
    /// the loop from now on, closed when both of the connection's pipes complete.</summary>
    public EpollConnection Add(Socket socket)
    {
        ulong key = (ulong)Interlocked.Increment(ref _nextKey);
        socket.Blocking = false;
        var connection = new EpollConnection(this, socket, key);
        _connections[key] = connection;
        if (!Control(CtlAdd, connection.Fd, In | RdHup, key))
        {
            _connections.TryRemove(key, out _);
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _closed), this);
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        return connection;
    }

    internal void Modify(int fd, uint events, ulong key) => Control(CtlMod, fd, events, key);

    internal void Add(int fd, uint events, ulong key) => Control(CtlAdd, fd, events, key);

    /// <summary>Takes the socket out of the set; with <paramref name="forget"/> (it closes) its key too.</summary>
    internal void Remove(int fd, ulong key, bool forget)
    {
        if (forget)
        {
            _connections.TryRemove(key, out _);
        }

        Control(CtlDel, fd, 0, key);
    }

    private bool Control(int op, int fd, uint events, ulong key)
    {
        // Under the lock the loop closes the descriptor with: a connection that ends after the loop stopped must not
        // touch a number the process may have given to another file since.
        lock (_closeGate)
        {
            if (_closed)
            {
                return false;
            }

            var e = new EpollEvent { Events = events, Data = key };
            return EpollCtl(_epoll, op, fd, &e) == 0;
        }
    }

    private void Run()
    {
        var events = stackalloc EpollEvent[EventsMax];
        while (!_stopping)
        {
            int n = EpollWait(_epoll, events, EventsMax, StopCheckMs);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Interrupted)
                {
                    continue;
                }

                RespLog.EpollFailed(_logger, errno);
                break;
            }

            for (int i = 0; i < n; i++)
            {
                if (!_connections.TryGetValue(events[i].Data, out var connection))
                {
                    continue; // closed since the kernel reported it
                }

                try
                {
                    connection.OnEvents(events[i].Events, (events[i].Events & (Err | Hup)) != 0);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A bug in one connection must not stop the loop every connection shares: drop that one.
                    RespLog.EpollConnectionFailed(_logger, e);
                    connection.Fail(e);
                }
            }
        }

        lock (_closeGate)
        {
            _closed = true;
            _ = CloseFd(_epoll);
        }
    }

    /// <summary>Stops the loop within <see cref="StopCheckMs"/>; it closes its epoll descriptor on the way out.
    /// The connections are closed by their own ends (<see cref="RespServer.DisposeAsync"/> kills them).</summary>
    public void Dispose()
    {
        _stopping = true;
        GC.SuppressFinalize(this);
    }

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int EpollCtl(int epoll, int op, int fd, EpollEvent* e);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static partial int EpollWait(int epoll, EpollEvent* events, int max, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int CloseFd(int fd);
}

/// <summary>
/// One RESP socket served by <see cref="EpollLoop"/>: its receive buffer as a <see cref="PipeReader"/> over one
/// array (<see cref="Input"/>) and its reply buffer as a <see cref="PipeWriter"/> whose flush sends at once
/// (<see cref="Output"/>). The loop thread appends received bytes; the connection reads, advances, writes and
/// flushes from whichever thread it runs on. All shared state is under <see cref="_gate"/>, never held while a
/// continuation runs.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
    Justification = "the socket is closed when both pipes complete (Complete), or by Close; the registrations are unregistered as their operations end")]
internal sealed class EpollConnection
{
    /// <summary>Unread bytes past which a busy connection's socket is no longer read (Redis reads a busy client's
    /// query buffer up to its limit; the parser's query-buffer limit still applies to what the connection reads).</summary>
    internal const int PauseBytes = 1 << 20;

    private const int InitialBytes = 4096;
    private const int ReadBytesMin = 2048;
    private const int KeepBytesMax = 64 * 1024;

    private readonly EpollLoop _loop;
    private readonly Socket _socket;
    private readonly ulong _key;
    private readonly Lock _gate = new();
    private uint _events = EpollLoop.In | EpollLoop.RdHup;
    private bool _registered = true;
    private bool _closed;

    // Input: bytes [_inStart, _inEnd) of _in are unconsumed; the reader has examined up to _inExamined.
    private byte[] _in = new byte[InitialBytes];
    private int _inStart;
    private int _inEnd;
    private int _inExamined;
    private bool _holding;
    private bool _eof;
    private Exception? _inError;
    private bool _readerDone;
    private bool _readCanceled;
    private bool _readPending;
    private CancellationToken _readToken;
    private CancellationTokenRegistration _readRegistration;
    private ManualResetValueTaskSourceCore<ReadResult> _readSource;

    // Output: bytes [_outSent, _outEnd) of _out are written and not yet sent.
    private byte[] _out = new byte[InitialBytes];
    private int _outEnd;
    private int _outSent;
    private bool _writerDone;
    private bool _flushPending;
    private CancellationToken _flushToken;
    private CancellationTokenRegistration _flushRegistration;
    private ManualResetValueTaskSourceCore<FlushResult> _flushSource;

    internal EpollConnection(EpollLoop loop, Socket socket, ulong key)
    {
        _loop = loop;
        _socket = socket;
        _key = key;
        Fd = (int)socket.Handle;
        Input = new Reader(this);
        Output = new Writer(this);
    }

    internal int Fd { get; }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    // ---- the loop's side ---------------------------------------------------------------------------------------

    /// <summary>The socket is readable, writable, or failed: read what it holds, send what waits.</summary>
    internal void OnEvents(uint events, bool failed)
    {
        bool completeRead = false, completeFlush = false;
        ReadResult read = default;
        Exception? readError = null, flushError = null;
        CancellationTokenRegistration readRegistration = default, flushRegistration = default;
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }

            if ((events & EpollLoop.In) != 0 || failed || (events & EpollLoop.RdHup) != 0)
            {
                Receive();
            }

            if (_flushPending && ((events & EpollLoop.Out) != 0 || failed))
            {
                flushError = SendPending();
                if (flushError is not null || _outSent == _outEnd)
                {
                    _flushPending = false;
                    completeFlush = true;
                    flushRegistration = _flushRegistration;
                    _flushRegistration = default;
                    ResetOutput();
                }
            }

            if (_readPending && (_inEnd > _inExamined || _eof || _inError is not null))
            {
                _readPending = false;
                completeRead = true;
                readRegistration = _readRegistration;
                _readRegistration = default;
                readError = _inError;
                if (readError is null)
                {
                    read = Hold();
                }
            }

            UpdateInterest();
        }

        // Outside the lock: the continuations run here, on the loop's thread.
        if (completeFlush)
        {
            flushRegistration.Unregister();
            if (flushError is null)
            {
                _flushSource.SetResult(default);
            }
            else
            {
                _flushSource.SetException(flushError);
            }
        }

        if (completeRead)
        {
            readRegistration.Unregister();
            if (readError is null)
            {
                _readSource.SetResult(read);
            }
            else
            {
                _readSource.SetException(readError);
            }
        }
    }

    /// <summary>The loop caught an exception from this connection: it ends as if the peer had reset it.</summary>
    internal void Fail(Exception e)
    {
        lock (_gate)
        {
            _inError ??= new IOException("the RESP connection failed", e);
        }

        OnEvents(0, failed: false);
    }

    /// <summary>One non-blocking recv into the buffer's free space (made first if the connection holds nothing).</summary>
    private void Receive()
    {
        if (_eof || _inError is not null)
        {
            return;
        }

        if (!_holding)
        {
            MakeRoom();
        }

        if (_in.Length == _inEnd || (!_readPending && _inEnd - _inStart >= PauseBytes))
        {
            return; // UpdateInterest stops reading until the connection reads again
        }

        int n = _socket.Receive(_in.AsSpan(_inEnd), SocketFlags.None, out var error);
        if (n > 0)
        {
            _inEnd += n;
        }
        else if (error == SocketError.Success)
        {
            _eof = true;
        }
        else if (error is not (SocketError.WouldBlock or SocketError.Interrupted))
        {
            _inError = new SocketException((int)error);
        }
    }

    private void MakeRoom()
    {
        if (_inStart == _inEnd)
        {
            _inExamined -= _inStart;
            _inStart = _inEnd = 0;
            if (_in.Length > KeepBytesMax)
            {
                _in = new byte[InitialBytes];
            }
        }

        if (_in.Length - _inEnd >= ReadBytesMin)
        {
            return;
        }

        int live = _inEnd - _inStart;
        byte[] target = live + ReadBytesMin <= _in.Length / 2 ? _in : new byte[(int)Math.Min(Array.MaxLength, Math.Max((long)_in.Length * 2, live + ReadBytesMin))];
        Buffer.BlockCopy(_in, _inStart, target, 0, live);
        _in = target;
        _inExamined -= _inStart;
        _inEnd = live;
        _inStart = 0;
    }

    /// <summary>Reads while the connection can take more, writes while a flush waits; on EOF or error nothing but a
    /// waiting flush is watched.</summary>
    private void UpdateInterest()
    {
        if (_closed)
        {
            return;
        }

        bool ended = _eof || _inError is not null;
        bool reading = !ended && (_readPending || (_inEnd - _inStart < PauseBytes && (!_holding || _inEnd < _in.Length)));
        uint events = (reading ? EpollLoop.In | EpollLoop.RdHup : 0) | (_flushPending ? EpollLoop.Out : 0);
        if (events == _events)
        {
            return;
        }

        _events = events;
        if (events == 0)
        {
            // Out of the set rather than asked for nothing: a socket that is reset or shut down reports EPOLLHUP
            // whatever it is asked for, and the loop would spin on it while the connection does not read.
            _registered = false;
            _loop.Remove(Fd, _key, forget: false);
        }
        else if (!_registered)
        {
            _registered = true;
            _loop.Add(Fd, events, _key);
        }
        else
        {
            _loop.Modify(Fd, events, _key);
        }
    }

    private ReadResult Hold()
    {
        _holding = true;
        bool canceled = _readCanceled;
        _readCanceled = false;
        return new ReadResult(new ReadOnlySequence<byte>(_in, _inStart, _inEnd - _inStart), canceled, _eof);
    }

    // ---- the reader ----------------------------------------------------------------------------------------------

    private ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_readerDone, Input);
            if (_holding || _readPending)
            {
                throw new InvalidOperationException("a read is already in progress");
            }

            if (_inError is not null)
            {
                return ValueTask.FromException<ReadResult>(_inError);
            }

            if (_inEnd > _inExamined || _eof || _readCanceled)
            {
                return new ValueTask<ReadResult>(Hold());
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<ReadResult>(cancellationToken);
            }

            _readSource.Reset();
            _readPending = true;
            _readToken = cancellationToken;
            if (cancellationToken.CanBeCanceled)
            {
                _readRegistration = cancellationToken.UnsafeRegister(static (state, token) => ((EpollConnection)state!).CancelRead(token), this);
            }

            UpdateInterest();
            return new ValueTask<ReadResult>((Reader)Input, _readSource.Version);
        }
    }

    private bool TryRead(out ReadResult result)
    {
        lock (_gate)
        {
            if (_holding || _readPending || _inError is not null || !(_inEnd > _inExamined || _eof || _readCanceled))
            {
                result = default;
                return false;
            }

            result = Hold();
            return true;
        }
    }

    private void CancelRead(CancellationToken token)
    {
        lock (_gate)
        {
            if (!_readPending || _readToken != token)
            {
                return;
            }

            _readPending = false;
            _readRegistration = default;
        }

        _readSource.SetException(new OperationCanceledException(token));
    }

    private void CancelPendingRead()
    {
        bool complete;
        ReadResult read = default;
        CancellationTokenRegistration registration = default;
        lock (_gate)
        {
            _readCanceled = true;
            complete = _readPending;
            if (complete)
            {
                _readPending = false;
                registration = _readRegistration;
                _readRegistration = default;
                read = Hold();
            }
        }

        if (complete)
        {
            registration.Unregister();
            _readSource.SetResult(read);
        }
    }

    private void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        lock (_gate)
        {
            if (!_holding)
            {
                throw new InvalidOperationException("AdvanceTo without a read");
            }

            int c = Position(consumed), e = Position(examined);
            if (c < _inStart || c > _inEnd || e < c || e > _inEnd)
            {
                throw new ArgumentOutOfRangeException(nameof(consumed), "the position is not in the last read's buffer");
            }

            _holding = false;
            _inStart = c;
            _inExamined = e;
            UpdateInterest();
        }
    }

    private int Position(SequencePosition position) =>
        ReferenceEquals(position.GetObject(), _in) ? position.GetInteger()
        : position.GetObject() is null && _inStart == _inEnd ? _inStart
        : throw new ArgumentOutOfRangeException(nameof(position), "the position is not in the last read's buffer");

    // ---- the writer ----------------------------------------------------------------------------------------------

    private Span<byte> GetSpan(int sizeHint) => GetMemory(sizeHint).Span;

    private Memory<byte> GetMemory(int sizeHint)
    {
        ObjectDisposedException.ThrowIf(_writerDone, Output);
        int need = Math.Max(sizeHint, 1);
        if (_out.Length - _outEnd < need)
        {
            int live = _outEnd - _outSent;
            var target = new byte[(int)Math.Min(Array.MaxLength, Math.Max((long)_out.Length * 2, (long)live + need))];
            Buffer.BlockCopy(_out, _outSent, target, 0, live);
            _out = target;
            _outSent = 0;
            _outEnd = live;
        }

        return _out.AsMemory(_outEnd);
    }

    private void Advance(int bytes)
    {
        if ((uint)bytes > (uint)(_out.Length - _outEnd))
        {
            throw new ArgumentOutOfRangeException(nameof(bytes));
        }

        _outEnd += bytes;
    }

    /// <summary>Sends everything written, now; waits for the loop's <c>EPOLLOUT</c> only if the socket's buffer is full.</summary>
    private ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_writerDone, Output);
            if (_flushPending)
            {
                throw new InvalidOperationException("a flush is already in progress");
            }

            if (SendPending() is { } error)
            {
                ResetOutput();
                return ValueTask.FromException<FlushResult>(error);
            }

            if (_outSent == _outEnd)
            {
                ResetOutput();
                return new ValueTask<FlushResult>(default(FlushResult));
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<FlushResult>(cancellationToken);
            }

            _flushSource.Reset();
            _flushPending = true;
            _flushToken = cancellationToken;
            if (cancellationToken.CanBeCanceled)
            {
                _flushRegistration = cancellationToken.UnsafeRegister(static (state, token) => ((EpollConnection)state!).CancelFlush(token), this);
            }

            UpdateInterest();
            return new ValueTask<FlushResult>((Writer)Output, _flushSource.Version);
        }
    }

    /// <summary>Sends until everything is sent or the socket would block; returns a send error.</summary>
    private SocketException? SendPending()
    {
        while (_outSent < _outEnd)
        {
            if (_closed)
            {
                return new SocketException((int)SocketError.OperationAborted);
            }

            int n = _socket.Send(_out.AsSpan(_outSent, _outEnd - _outSent), SocketFlags.None, out var error);
            if (n > 0)
            {
                _outSent += n;
            }
            else if (error is SocketError.WouldBlock)
            {
                return null;
            }
            else if (error is not SocketError.Interrupted)
            {
                return new SocketException((int)(error == SocketError.Success ? SocketError.ConnectionReset : error));
            }
        }

        return null;
    }

    private void ResetOutput()
    {
        _outSent = _outEnd = 0;
        if (_out.Length > KeepBytesMax)
        {
            _out = new byte[InitialBytes];
        }
    }

    private void CancelFlush(CancellationToken token)
    {
        lock (_gate)
        {
            if (!_flushPending || _flushToken != token)
            {
                return;
            }

            _flushPending = false;
            _flushRegistration = default;
            UpdateInterest();
        }

        _flushSource.SetException(new OperationCanceledException(token));
    }

    private void CancelPendingFlush()
    {
        bool complete;
        CancellationTokenRegistration registration = default;
        lock (_gate)
        {
            complete = _flushPending;
            if (complete)
            {
                _flushPending = false;
                registration = _flushRegistration;
                _flushRegistration = default;
                UpdateInterest();
            }
        }

        if (complete)
        {
            registration.Unregister();
            _flushSource.SetResult(new FlushResult(isCanceled: true, isCompleted: false));
        }
    }

    // ---- the end -------------------------------------------------------------------------------------------------

    private void Complete(bool reader)
    {
        lock (_gate)
        {
            if (reader)
            {
                _readerDone = true;
                _holding = false;
            }
            else
            {
                _writerDone = true;
            }

            if (!_readerDone || !_writerDone || _closed)
            {
                return;
            }

            _closed = true;
            _loop.Remove(Fd, _key, forget: true);
        }

        _socket.Dispose();
    }

    /// <summary>Closes the socket whatever the pipes' state (the connection never started, or failed before its
    /// pipes completed).</summary>
    public void Close()
    {
        Complete(reader: true);
        Complete(reader: false);
    }

    private sealed class Reader(EpollConnection connection) : PipeReader, IValueTaskSource<ReadResult>
    {
        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => connection.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => connection.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => connection.AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => connection.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => connection.CancelPendingRead();

        public override void Complete(Exception? exception = null) => connection.Complete(reader: true);

        public ReadResult GetResult(short token) => connection._readSource.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => connection._readSource.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            connection._readSource.OnCompleted(continuation, state, token, flags);
    }

    private sealed class Writer(EpollConnection connection) : PipeWriter, IValueTaskSource<FlushResult>
    {
        public override bool CanGetUnflushedBytes => true;

        public override long UnflushedBytes => connection._outEnd - connection._outSent;

        public override void Advance(int bytes) => connection.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => connection.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => connection.GetSpan(sizeHint);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => connection.FlushAsync(cancellationToken);

        public override void CancelPendingFlush() => connection.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => connection.Complete(reader: false);

        public FlushResult GetResult(short token) => connection._flushSource.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => connection._flushSource.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            connection._flushSource.OnCompleted(continuation, state, token, flags);
    }
}
