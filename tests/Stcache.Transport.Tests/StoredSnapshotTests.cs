using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

/// <summary>
/// Snapshots streamed from the sender's store (<see cref="PeerTransport.SendSnapshot"/>) into the receiver's store
/// (<see cref="PeerTransport.BeginSnapshotReceive"/>): read a chunk at a time, never whole, paced by the receiver,
/// and delivered only once the receiver verified them.
/// </summary>
public sealed class StoredSnapshotTests
{
    private static readonly TimeSpan s_quiet = TimeSpan.FromMilliseconds(300);

    [Fact]
    public async Task AStoredSnapshotLargerThanAFrameIsReadChunkByChunkAndDeliveredWithoutData()
    {
        const int chunk = 16 * 1024;
        const long length = 3 * 1024 * 1024 + 123;
        await using var a = await Node.StartAsync(1, o => { o.FrameBytesMax = 64 * 1024; o.BatchBytesTarget = 32 * 1024; o.SnapshotChunkBytes = chunk; });
        await using var b = await Node.StartAsync(2, o => { o.FrameBytesMax = 64 * 1024; o.BatchBytesTarget = 32 * 1024; o.SnapshotChunkBytes = chunk; o.SnapshotBytesMax = 1024; });
        var receiver = new PatternReceiver(length);
        b.Transport.BeginSnapshotReceive = (metadata, announced) => receiver.Begin(metadata, announced);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), b.Address);

        var source = new PatternStream(length);
        var header = TestMessages.Snapshot(1, 2, []);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        a.Transport.SendSnapshot(header, source);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 2));

        var received = await b.ReceiveAsync(3, TimeSpan.FromSeconds(20));
        var snapshot = Assert.Single(received, m => m.Type == MessageType.Snapshot);
        Assert.True(snapshot.Snapshot!.Data.IsEmpty, "the data stays in the receiver's store");
        Assert.Equal(header.Snapshot!.Metadata.Index, snapshot.Snapshot.Metadata.Index);
        Assert.Equal(header.Snapshot.Metadata.ConfState, snapshot.Snapshot.Metadata.ConfState);
        Assert.Equal((new NodeId(2), true), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(length, receiver.Received);
        Assert.True(receiver.Completed);
        Assert.True(source.LargestRead <= chunk, $"largest read {source.LargestRead} bytes; chunks are {chunk}");
        Assert.True(source.Disposed, "the transport closes the stored snapshot when done");
        Assert.Equal([1UL, 2UL], received.Where(m => m.Type == MessageType.Heartbeat).Select(m => m.Round));
    }

    [Fact]
    public async Task ASlowReceiverHoldsBackTheReadingOfTheStoredSnapshot()
    {
        const long length = 256L * 1024 * 1024;
        await using var a = await Node.StartAsync(1, o => o.SnapshotChunkBytes = 1024 * 1024);
        await using var b = await Node.StartAsync(2);
        using var gate = new SemaphoreSlim(0);
        var receiver = new PatternReceiver(length, gate);
        b.Transport.BeginSnapshotReceive = (metadata, announced) => receiver.Begin(metadata, announced);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), b.Address);
        var source = new PatternStream(length);
        a.Transport.SendSnapshot(TestMessages.Snapshot(1, 2, []), source);

        // The receiver takes nothing yet: the sender reads what fits the socket buffers and its pipe, then waits.
        await Wait.UntilAsync(() => receiver.Blocked, "the first chunk reaches the receiver");
        await Task.Delay(s_quiet);
        long readWhileBlocked = source.Position;
        Assert.True(readWhileBlocked < 64L * 1024 * 1024, $"read {readWhileBlocked} bytes of a {length}-byte snapshot while the receiver took none");
        Assert.False(completed.Task.IsCompleted);
        Assert.True(a.Transport.IsSendingSnapshot(new NodeId(2)), "a host must not send it again meanwhile");

        gate.Release(int.MaxValue / 2);
        var message = await b.ReceiveAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(MessageType.Snapshot, message.Type);
        Assert.Equal((new NodeId(2), true), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(length, receiver.Received);
        Assert.False(a.Transport.IsSendingSnapshot(new NodeId(2)));
    }

    [Fact]
    public async Task ASnapshotTheReceiverFindsCorruptIsNotDeliveredAndTheSendFails()
    {
        await using var a = await Node.StartAsync(1, o => o.SnapshotChunkBytes = 64 * 1024);
        await using var b = await Node.StartAsync(2);
        var receiver = new PatternReceiver(1024 * 1024, failComplete: "snapshot checksum mismatch");
        b.Transport.BeginSnapshotReceive = (metadata, announced) => receiver.Begin(metadata, announced);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.SendSnapshot(TestMessages.Snapshot(1, 2, []), new PatternStream(1024 * 1024));

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the receiver refuses the snapshot");
        Assert.True(receiver.Disposed, "what was received is discarded");
        Assert.Contains(b.Logger.Records, r => r.Level == LogLevel.Warning && r.Text.Contains("snapshot checksum mismatch", StringComparison.Ordinal));
        Assert.False(b.Received.Reader.TryRead(out _), "nothing is delivered");

        // Once the sender has seen the connection go, it connects again for what follows.
        await Wait.UntilAsync(() => a.Transport.ConnectionFailures >= 1, "the sender sees the connection closed");
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 7));
        Assert.Equal(7UL, (await b.ReceiveAsync()).Round);
    }

    [Fact]
    public async Task AStoredSnapshotThatEndsEarlyFailsTheSendAndTheReceiverDiscardsIt()
    {
        await using var a = await Node.StartAsync(1, o => o.SnapshotChunkBytes = 64 * 1024);
        await using var b = await Node.StartAsync(2);
        var receiver = new PatternReceiver(1024 * 1024);
        b.Transport.BeginSnapshotReceive = (metadata, announced) => receiver.Begin(metadata, announced);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), b.Address);

        // Says 1 MiB, holds 300 KiB: the sender cannot finish, so it must cut the connection mid-snapshot.
        a.Transport.SendSnapshot(TestMessages.Snapshot(1, 2, []), new PatternStream(1024 * 1024, endsAt: 300 * 1024));

        Assert.Equal((new NodeId(2), false), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(a.Transport.IsSendingSnapshot(new NodeId(2)), "a failed snapshot may be sent again");
        await Wait.UntilAsync(() => receiver.Disposed, "the receiver discards the partial snapshot");
        Assert.False(receiver.Completed);
        Assert.Contains(b.Logger.Records, r => r.Level == LogLevel.Warning && r.EventId.Id == 3031);
        Assert.False(b.Received.Reader.TryRead(out _), "nothing is delivered");
    }

    [Fact]
    public async Task ANodeThatTakesNoStoredSnapshotsRefusesThem()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.SendSnapshot(TestMessages.Snapshot(1, 2, []), new PatternStream(4096));
        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the receiver refuses the snapshot");
        Assert.Equal(0, b.Transport.MessagesReceived);
    }

    [Fact]
    public async Task AStoredSnapshotToAnUnknownPeerFailsAndIsClosed()
    {
        await using var a = await Node.StartAsync(1);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        var source = new PatternStream(4096);
        a.Transport.SendSnapshot(TestMessages.Snapshot(1, 2, []), source);
        Assert.Equal((new NodeId(2), false), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(source.Disposed);
        Assert.False(a.Transport.IsSendingSnapshot(new NodeId(2)));
    }

    private static byte At(long position) => (byte)((position * 31) ^ (position >> 9));

    /// <summary>A read-only stream of <see cref="At"/> bytes that records how it is read; never holds its data.</summary>
    private sealed class PatternStream(long length, long? endsAt = null) : Stream
    {
        private long _position;

        public int LargestRead { get; private set; }

        public bool Disposed { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => length;

        public override long Position
        {
            get => Interlocked.Read(ref _position);
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            long end = endsAt ?? length;
            int count = (int)Math.Min(buffer.Length, end - _position);
            for (int i = 0; i < count; i++)
            {
                buffer[i] = At(_position + i);
            }

            LargestRead = Math.Max(LargestRead, count);
            Interlocked.Add(ref _position, count);
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }

    /// <summary>Checks every byte against <see cref="At"/>; optionally waits on a gate before each piece.</summary>
    private sealed class PatternReceiver(long expected, SemaphoreSlim? gate = null, string? failComplete = null) : ISnapshotReceiver
    {
        private SnapshotMetadata? _metadata;
        private long _received;
        private volatile bool _blocked;
        private volatile bool _disposed;
        private volatile bool _completed;

        public long Received => Interlocked.Read(ref _received);

        public bool Blocked => _blocked;

        public bool Disposed => _disposed;

        public bool Completed => _completed;

        public ISnapshotReceiver Begin(SnapshotMetadata metadata, long announced)
        {
            Assert.Equal(expected, announced);
            _metadata = metadata;
            return this;
        }

        public void Write(ReadOnlySpan<byte> piece)
        {
            if (gate is not null)
            {
                _blocked = true;
                gate.Wait();
            }

            for (int i = 0; i < piece.Length; i++)
            {
                if (piece[i] != At(_received + i))
                {
                    throw new InvalidDataException($"byte {_received + i} differs");
                }
            }

            Interlocked.Add(ref _received, piece.Length);
        }

        public SnapshotMetadata Complete()
        {
            if (failComplete is not null)
            {
                throw new InvalidDataException(failComplete);
            }

            Assert.Equal(expected, Received);
            _completed = true;
            return _metadata!;
        }

        public void Dispose() => _disposed = true;
    }
}
