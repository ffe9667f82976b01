using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stcache.Raft;
using Xunit.Abstractions;

namespace Stcache.Transport.Tests;

public sealed class PeerTransportTests
{
    private static readonly TimeSpan s_quiet = TimeSpan.FromMilliseconds(300);
    private readonly ITestOutputHelper _output;

    public PeerTransportTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public async Task ExchangesMessagesBothWays()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        b.Transport.SetPeer(new NodeId(1), a.Address);

        var append = new Message
        {
            Type = MessageType.Append,
            From = new NodeId(1),
            To = new NodeId(2),
            Term = new Term(2),
            LogTerm = new Term(1),
            Index = new LogIndex(10),
            Commit = new LogIndex(9),
            Entries = [new Entry(new Term(2), new LogIndex(11), EntryType.Normal, "set x 1"u8.ToArray())],
        };
        a.Transport.Send(append);
        TestMessages.AssertSame(append, await b.ReceiveAsync());

        var response = new Message { Type = MessageType.AppendResponse, From = new NodeId(2), To = new NodeId(1), Term = new Term(2), Index = new LogIndex(11) };
        b.Transport.Send(response);
        TestMessages.AssertSame(response, await a.ReceiveAsync());

        // The sender counts after its flush returns, which may be after the receiver delivered.
        await Wait.UntilAsync(() => a.Transport.MessagesSent == 1 && b.Transport.MessagesSent == 1, "both sends are counted");
        Assert.Equal(1, a.Transport.MessagesReceived);
        Assert.Equal(1, b.Transport.MessagesSent);
        Assert.Equal(1, b.Transport.MessagesReceived);
        Assert.Equal(a.Transport.BytesSent, b.Transport.BytesReceived);
        Assert.True(a.Transport.IsConnected(new NodeId(2)));
        Assert.Equal(0, a.Transport.MessagesDropped);
    }

    [Fact]
    public async Task AnIdleLinkSendsBeforeSendReturns()
    {
        // On an idle plain link the writer loop resumes inline on the caller of Send (the Raft loop, in a node):
        // the frame is written, and counted, before Send returns, without waking the sender's task.
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        static Message Ack(ulong index) => new() { Type = MessageType.AppendResponse, From = new NodeId(1), To = new NodeId(2), Term = new Term(2), Index = new LogIndex(index) };

        a.Transport.Send(Ack(1));
        Assert.Equal(1ul, (await b.ReceiveAsync()).Index.Value);
        await Wait.UntilAsync(() => a.Transport.MessagesSent == 1, "the first send is counted");

        const int sends = 20;
        int before = 0;
        for (int i = 2; i <= sends + 1; i++)
        {
            a.Transport.Send(Ack((ulong)i));
            if (a.Transport.MessagesSent == i)
            {
                before++;
            }

            Assert.Equal((ulong)i, (await b.ReceiveAsync()).Index.Value);
            await Wait.UntilAsync(() => a.Transport.MessagesSent == i, "the send is counted");
        }

        _output.WriteLine($"{before} of {sends} sends written before Send returned");
        Assert.True(before >= sends * 3 / 4, $"only {before} of {sends} sends on an idle link were written before Send returned");
    }

    [Fact]
    public async Task CoalescesQueuedMessagesIntoFewFramesInOrder()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);

        // The first connect is lazy, so all of these are queued before the writer runs.
        const int count = 2000;
        for (int i = 0; i < count; i++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, (ulong)i));
        }

        var received = await b.ReceiveAsync(count);
        Assert.Equal(Enumerable.Range(0, count).Select(i => (ulong)i), received.Select(m => m.Round));
        await Wait.UntilAsync(() => a.Transport.MessagesSent == count, "all sends are counted");
        _output.WriteLine($"{count} messages in {a.Transport.FramesSent} frames");

        // Usually one frame; bounded loosely because the writer may start while the loop above still runs.
        Assert.True(a.Transport.FramesSent <= count / 20, $"{a.Transport.FramesSent} frames");
    }

    [Fact]
    public async Task SplitsBatchesAtTheTargetAndKeepsOrder()
    {
        await using var a = await Node.StartAsync(1, o => o.BatchBytesTarget = 1000);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        const int count = 2000;
        for (int i = 0; i < count; i++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, (ulong)i));
        }

        var received = await b.ReceiveAsync(count);
        Assert.Equal(Enumerable.Range(0, count).Select(i => (ulong)i), received.Select(m => m.Round));
        await Wait.UntilAsync(() => a.Transport.MessagesSent == count, "all sends are counted");
        Assert.True(a.Transport.FramesSent >= count * 74 / 1000, $"{a.Transport.FramesSent} frames");
    }

    [Fact]
    public async Task QueueOverflowDropsAndCounts()
    {
        // A listener that accepts and never answers keeps the writer stuck in the handshake.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        silent.Listen();
        await using var a = await Node.StartAsync(1, o =>
        {
            o.PeerQueueCapacity = 16;
            o.HandshakeTimeout = TimeSpan.FromSeconds(30);
        });
        int unreachable = 0;
        a.Transport.PeerUnreachable += id => Interlocked.Increment(ref unreachable);
        a.Transport.SetPeer(new NodeId(2), silent.LocalEndPoint!.ToString()!);

        for (int i = 0; i < 100; i++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, (ulong)i));
        }

        Assert.Equal(84, a.Transport.MessagesDropped);
        Assert.Equal(84, Volatile.Read(ref unreachable));

        // Unknown peers are dropped too, and a dropped snapshot reports failure.
        var snapshotResult = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => snapshotResult.TrySetResult((id, ok));
        a.Transport.Send(TestMessages.Snapshot(1, 7, [1]));
        Assert.Equal((new NodeId(7), false), await snapshotResult.Task.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(85, a.Transport.MessagesDropped);
    }

    [Fact]
    public async Task ReconnectsAfterThePeerRestarts()
    {
        await using var a = await Node.StartAsync(1);
        var b = await Node.StartAsync(2);
        var port = b.Transport.ListenEndPoint!.Port;
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        Assert.Equal(1UL, (await b.ReceiveAsync()).Round);
        await b.DisposeAsync();

        await using var restarted = await Node.StartAsync(2, o => o.ListenEndPoint = new IPEndPoint(IPAddress.Loopback, port));
        var deadline = Stopwatch.StartNew();
        ulong context = 100;
        while (true)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, context++));
            using var attempt = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
            try
            {
                var message = await restarted.Received.Reader.ReadAsync(attempt.Token);
                Assert.True(message.Round >= 100);
                break;
            }
            catch (OperationCanceledException) when (deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                // Not reconnected yet; the loop sends again.
            }
        }

        Assert.True(a.Transport.ConnectionFailures >= 1);
    }

    [Theory]
    [InlineData("cluster")]
    [InlineData("secret")]
    [InlineData("secret-on-one-side")]
    [InlineData("target")]
    public async Task RefusesPeersThatDoNotBelong(string mismatch)
    {
        byte[] secret = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        byte[] otherSecret = Enumerable.Range(0, 32).Select(i => (byte)(i + 1)).ToArray();
        await using var b = await Node.StartAsync(2, o =>
        {
            o.ClusterSecret = secret;
        });
        await using var a = await Node.StartAsync(1, o =>
        {
            o.ClusterSecret = mismatch switch
            {
                "secret" => otherSecret,
                "secret-on-one-side" => null,
                _ => secret,
            };
            o.ClusterId = mismatch == "cluster" ? "other-cluster" : "test-cluster";
        });

        // With "target", node 1 believes node 3 listens at node 2's address.
        var target = new NodeId(mismatch == "target" ? 3UL : 2UL);
        a.Transport.SetPeer(target, b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, target.Value));

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1 && a.Transport.ConnectionFailures >= 1, "the connection is refused");
        Assert.True(b.Logger.Has(LogLevel.Warning, 3005));
        Assert.False(a.Transport.IsConnected(target));
        Assert.False(b.Received.Reader.TryRead(out _));
        Assert.Equal(0, b.Transport.MessagesReceived);
    }

    [Fact]
    public async Task AuthenticatedPeersExchangeMessages()
    {
        byte[] secret = Enumerable.Range(0, 32).Select(i => (byte)(i * 7)).ToArray();
        await using var a = await Node.StartAsync(1, o => o.ClusterSecret = secret);
        await using var b = await Node.StartAsync(2, o => o.ClusterSecret = secret);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 5));
        Assert.Equal(5UL, (await b.ReceiveAsync()).Round);
    }

    [Fact]
    public async Task GarbageOnTheListenerIsRefusedWhileLegitPeersKeepWorking()
    {
        await using var b = await Node.StartAsync(2, o => o.HandshakeTimeout = TimeSpan.FromMilliseconds(500));
        await using var a = await Node.StartAsync(1);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        Assert.Equal(1UL, (await b.ReceiveAsync()).Round);

        var random = new Random(11);
        byte[] garbage = new byte[4096];
        random.NextBytes(garbage);
        garbage[0] = 0x47; // not the protocol version
        byte[] absurd = new byte[FrameCodec.HeaderBytes];
        FrameCodec.WriteHeader(absurd, FrameType.Hello, int.MaxValue);
        byte[] absurdMessages = new byte[FrameCodec.HeaderBytes];
        FrameCodec.WriteHeader(absurdMessages, FrameType.Messages, 1000);
        var hello = Handshake.EncodeHello(new Handshake.Hello("test-cluster", new NodeId(9), new NodeId(2), Handshake.NewNonce()));
        var truncatedHello = new ArrayBufferWriter<byte>();
        FrameCodec.WriteFrame(truncatedHello, FrameType.Hello, hello);

        var attacks = new List<Func<Socket, Task>>
        {
            s => SendAndCloseAsync(s, garbage),
            s => SendAndCloseAsync(s, absurd),
            s => SendAndCloseAsync(s, absurdMessages),
            s => SendAndCloseAsync(s, truncatedHello.WrittenSpan[..^5].ToArray()),
            _ => Task.CompletedTask, // says nothing: handshake timeout
        };
        foreach (var attack in attacks)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(b.Transport.ListenEndPoint!);
            await attack(socket);
            await AssertClosedByPeerAsync(socket);
        }

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused == attacks.Count, "all attacks are refused");
        Assert.True(b.Logger.Has(LogLevel.Warning, 3005));

        a.Transport.Send(TestMessages.Heartbeat(1, 2, 2));
        Assert.Equal(2UL, (await b.ReceiveAsync()).Round);
        Assert.Equal(2, b.Transport.MessagesReceived);
    }

    [Fact]
    public async Task AnAuthenticatedPeerForgingTheSenderIsDisconnectedAndNothingIsDelivered()
    {
        await using var b = await Node.StartAsync(2);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(b.Transport.ListenEndPoint!);
        await using var stream = new NetworkStream(socket);
        var reader = System.IO.Pipelines.PipeReader.Create(stream);
        var writer = System.IO.Pipelines.PipeWriter.Create(stream);

        await DialAsync(reader, writer, null, new NodeId(1), new NodeId(2));

        // A valid heartbeat followed, in the same frame, by one claiming to come from node 3.
        var good = MessageCodec.Encode(TestMessages.Heartbeat(1, 2, 1));
        var forged = MessageCodec.Encode(TestMessages.Heartbeat(3, 2, 2));
        var body = new byte[4 + good.Length + forged.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 2);
        good.CopyTo(body, 4);
        forged.CopyTo(body, 4 + good.Length);
        FrameCodec.WriteFrame(writer, FrameType.Messages, body);
        await writer.FlushAsync();

        await AssertClosedByPeerAsync(socket);
        Assert.Equal(0, b.Transport.MessagesReceived);
        Assert.True(b.Logger.Has(LogLevel.Warning, 3007));
    }

    [Fact]
    public async Task StreamsALargeSnapshotInChunksBetweenOtherMessages()
    {
        await using var a = await Node.StartAsync(1, o => o.SnapshotChunkBytes = 1024 * 1024);
        await using var b = await Node.StartAsync(2, o => o.SnapshotBytesMax = 32 * 1024 * 1024);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), b.Address);

        byte[] data = new byte[20 * 1024 * 1024];
        new Random(3).NextBytes(data);
        var snapshot = TestMessages.Snapshot(1, 2, data);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        a.Transport.Send(snapshot);
        for (int i = 2; i <= 50; i++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, (ulong)i));
        }

        var received = await b.ReceiveAsync(51, TimeSpan.FromSeconds(20));
        var snapshots = received.Where(m => m.Type == MessageType.Snapshot).ToList();
        Assert.Single(snapshots);
        TestMessages.AssertSame(snapshot, snapshots[0]);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (ulong)i), received.Where(m => m.Type == MessageType.Heartbeat).Select(m => m.Round));
        Assert.Equal((new NodeId(2), true), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(a.Transport.FramesSent >= 20, "the snapshot went in chunks");
    }

    [Fact]
    public async Task ASnapshotLargerThanTheReceiverAllowsIsRefused()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2, o => o.SnapshotBytesMax = 1024);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Snapshot(1, 2, new byte[4096]));
        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the receiver refuses the snapshot");
        Assert.Equal(0, b.Transport.MessagesReceived);
    }

    [Fact]
    public async Task ASnapshotToAnUnreachablePeerFails()
    {
        using var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        string address = closed.LocalEndPoint!.ToString()!; // bound, never listening: connects are refused
        await using var a = await Node.StartAsync(1);
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var unreachable = new TaskCompletionSource<NodeId>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.PeerUnreachable += id => unreachable.TrySetResult(id);
        a.Transport.SetPeer(new NodeId(2), address);
        a.Transport.Send(TestMessages.Snapshot(1, 2, [1, 2, 3]));
        Assert.Equal((new NodeId(2), false), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(new NodeId(2), await unreachable.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(a.Transport.ConnectionFailures >= 1);
    }

    [Fact]
    public async Task APeerThatStopsReadingTimesOutAndTheSnapshotFails()
    {
        // A fake listener that completes the handshake, then never reads again.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        await using var a = await Node.StartAsync(1, o => o.WriteTimeout = TimeSpan.FromMilliseconds(300));
        var completed = new TaskCompletionSource<(NodeId, bool)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (id, ok) => completed.TrySetResult((id, ok));
        a.Transport.SetPeer(new NodeId(2), listener.LocalEndPoint!.ToString()!);
        a.Transport.Send(TestMessages.Snapshot(1, 2, new byte[64 * 1024 * 1024]));

        using var accepted = await listener.AcceptAsync();
        await using var stream = new NetworkStream(accepted);
        var reader = System.IO.Pipelines.PipeReader.Create(stream);
        var writer = System.IO.Pipelines.PipeWriter.Create(stream);
        Assert.True(Handshake.TryDecodeHello(await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Hello, CancellationToken.None), out var hello));
        byte[] nonce = Handshake.NewNonce();
        await PeerTransport.WriteFrameAsync(writer, FrameType.Challenge, Handshake.EncodeChallenge(new Handshake.Challenge(new NodeId(2), new NodeId(1), nonce, [])), CancellationToken.None);
        await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Proof, CancellationToken.None);
        await PeerTransport.WriteFrameAsync(writer, FrameType.Accepted, [], CancellationToken.None);

        Assert.Equal((new NodeId(2), false), await completed.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        await Wait.UntilAsync(() => a.Transport.ConnectionFailures >= 1, "the stalled connection counts as failed");
        Assert.Equal(new NodeId(1), hello.From);

        // Stopping must not wait for the stalled peer, which still holds its end open here.
        await a.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task FollowsAddressChangesAndForgetsRemovedPeers()
    {
        using var nowhere = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        nowhere.Bind(new IPEndPoint(IPAddress.Loopback, 0)); // bound, not listening: connects are refused
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), nowhere.LocalEndPoint!.ToString()!);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        // The sender dials at once (KeepConnected), so a failure may come before the message: wait for its drop.
        await Wait.UntilAsync(() => a.Transport.MessagesDropped >= 1, "the wrong address fails and the message is dropped");

        a.Transport.SetPeer(new NodeId(2), b.Address);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, 2));
            using var attempt = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
            try
            {
                Assert.Equal(2UL, (await b.Received.Reader.ReadAsync(attempt.Token)).Round);
                break;
            }
            catch (OperationCanceledException) when (deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                // Still in back-off from the wrong address.
            }
        }

        a.Transport.RemovePeer(new NodeId(2));
        long dropped = a.Transport.MessagesDropped;
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 3));
        Assert.Equal(dropped + 1, a.Transport.MessagesDropped);
        Assert.False(a.Transport.IsConnected(new NodeId(2)));
    }

    [Fact]
    public async Task RemovedPeerStillGetsWhatWasQueuedBeforeTheRemoval()
    {
        // A leader removes a member right after queueing the append that tells it the removal committed; that
        // append must still go out, or the removed node never learns it is out.
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        const int count = 500;
        for (int i = 0; i < count; i++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, (ulong)i));
        }

        // The first connect is lazy: nothing has been written yet.
        a.Transport.RemovePeer(new NodeId(2));
        var received = await b.ReceiveAsync(count);
        Assert.Equal(Enumerable.Range(0, count).Select(i => (ulong)i), received.Select(m => m.Round));

        long dropped = a.Transport.MessagesDropped;
        a.Transport.Send(TestMessages.Heartbeat(1, 2, count));
        Assert.Equal(dropped + 1, a.Transport.MessagesDropped);
    }

    [Fact]
    public async Task ListenerTellsADialerItDoesNotListItAndTheLinkStillWorks()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        b.Transport.NotAMemberAsOf = id => id == new NodeId(1) ? new LogIndex(42) : null;
        var told = new TaskCompletionSource<(NodeId Peer, LogIndex AsOf)>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.ToldNotAMember += (peer, asOf) => told.TrySetResult((peer, asOf));
        a.Transport.SetPeer(new NodeId(2), b.Address);

        a.Transport.Send(TestMessages.Heartbeat(1, 2, 5));
        Assert.Equal(5UL, (await b.ReceiveAsync()).Round);
        Assert.Equal((new NodeId(2), new LogIndex(42)), await told.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task MemberDialerIsToldNothing()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        b.Transport.NotAMemberAsOf = _ => null;
        int told = 0;
        a.Transport.ToldNotAMember += (_, _) => Interlocked.Increment(ref told);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 5));
        Assert.Equal(5UL, (await b.ReceiveAsync()).Round);
        Assert.Equal(0, Volatile.Read(ref told));
    }

    [Fact]
    public async Task RemovingAPeerClosesItsInboundLinkSoItsNextDialHearsItIsOut()
    {
        // A removed node that missed its removal is still connected; its next handshake is where it hears.
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2, o => o.RemovedPeerDrain = TimeSpan.FromMilliseconds(100));
        bool removed = false;
        b.Transport.NotAMemberAsOf = _ => Volatile.Read(ref removed) ? new LogIndex(9) : null;
        var told = new TaskCompletionSource<LogIndex>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.ToldNotAMember += (_, asOf) => told.TrySetResult(asOf);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
        Assert.Equal(1UL, (await b.ReceiveAsync()).Round);

        Volatile.Write(ref removed, true);
        b.Transport.RemovePeer(new NodeId(1));
        await Wait.UntilAsync(() => a.Transport.ConnectionFailures >= 1, "b closes a's link after the drain");

        // The next message makes a dial again, and that handshake carries the notice.
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 2));
        Assert.Equal(new LogIndex(9), await told.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(a.Transport.ConnectionFailures >= 1);
    }

    [Fact]
    public void BackoffGrowsWithJitterWithinBounds()
    {
        var options = new TransportOptions
        {
            NodeId = new NodeId(1),
            ClusterId = "c",
            ReconnectBackoffMin = TimeSpan.FromMilliseconds(50),
            ReconnectBackoffMax = TimeSpan.FromSeconds(2),
        };
        var transport = new PeerTransport(options, _ => { }, new ListLogger<PeerTransport>());
        var sender = new PeerSender(transport, new NodeId(2), "127.0.0.1:1");
        for (int failures = 1; failures < 100; failures++)
        {
            var delay = sender.Backoff(failures);
            Assert.InRange(delay, options.ReconnectBackoffMin, options.ReconnectBackoffMax);
        }

        Assert.True(sender.Backoff(10) >= TimeSpan.FromSeconds(1));
        Assert.True(sender.Backoff(1) <= TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<OptionsValidationException>(() => new PeerTransport(new TransportOptions { ClusterId = "c" }, _ => { }, new ListLogger<PeerTransport>()));
        Assert.Throws<OptionsValidationException>(() => new PeerTransport(
            new TransportOptions { NodeId = new NodeId(1), ClusterId = "c", ClusterSecret = [1, 2, 3] }, _ => { }, new ListLogger<PeerTransport>()));
        var result = new TransportOptionsValidator().Validate(null, new TransportOptions
        {
            NodeId = new NodeId(1),
            ClusterId = string.Empty,
            PeerQueueCapacity = 0,
            ReconnectBackoffMin = TimeSpan.FromSeconds(5),
            ReconnectBackoffMax = TimeSpan.FromSeconds(1),
        });
        Assert.True(result.Failed);
        Assert.Equal(3, result.Failures!.Count());
    }

    [Fact]
    public async Task SendRejectsProgrammingErrors()
    {
        await using var a = await Node.StartAsync(1);
        Assert.Throws<ArgumentException>(() => a.Transport.Send(TestMessages.Heartbeat(2, 3)));
        Assert.Throws<ArgumentException>(() => a.Transport.Send(TestMessages.Heartbeat(1, 1)));
        Assert.Throws<ArgumentException>(() => a.Transport.SetPeer(new NodeId(2), "no-port"));
    }

    /// <summary>
    /// Prints messages/s between two transports on loopback. Asserts only completion; the figure depends on the
    /// machine. Run alone with: dotnet test -c Release --filter FullyQualifiedName~Throughput --logger "console;verbosity=detailed".
    /// </summary>
    [Fact]
    public async Task Throughput()
    {
        const int count = 200_000;
        long received = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var optionsB = new TransportOptions { NodeId = new NodeId(2), ClusterId = "bench" };
        var optionsA = new TransportOptions { NodeId = new NodeId(1), ClusterId = "bench", PeerQueueCapacity = 65536 };
        await using var b = new PeerTransport(
            optionsB,
            _ =>
            {
                if (Interlocked.Increment(ref received) == count + 1)
                {
                    done.TrySetResult();
                }
            },
            new ListLogger<PeerTransport>());
        await using var a = new PeerTransport(optionsA, _ => { }, new ListLogger<PeerTransport>());
        await b.StartAsync(CancellationToken.None);
        await a.StartAsync(CancellationToken.None);
        a.SetPeer(new NodeId(2), b.ListenEndPoint!.ToString());
        var append = new Message
        {
            Type = MessageType.Append,
            From = new NodeId(1),
            To = new NodeId(2),
            Term = new Term(2),
            LogTerm = new Term(2),
            Index = new LogIndex(10),
            Entries = [new Entry(new Term(2), new LogIndex(11), EntryType.Normal, new byte[64])],
        };
        a.Send(append);
        await Wait.UntilAsync(() => Interlocked.Read(ref received) == 1, "connected");

        var stopwatch = Stopwatch.StartNew();
        int sent = 0;
        while (sent < count)
        {
            long before = a.MessagesDropped;
            a.Send(append);
            if (a.MessagesDropped == before)
            {
                sent++;
            }
            else
            {
                // The queue is full: let the writer drain it, then resend (the drop is counted).
                await Task.Yield();
            }
        }

        await done.Task.WaitAsync(TimeSpan.FromSeconds(20));
        stopwatch.Stop();
        _output.WriteLine(
            $"{count} appends (64 B entry) in {stopwatch.Elapsed.TotalMilliseconds:F0} ms: {count / stopwatch.Elapsed.TotalSeconds:F0} msg/s, " +
            $"{a.FramesSent} frames, {a.BytesSent / stopwatch.Elapsed.TotalSeconds / 1e6:F1} MB/s, {a.MessagesDropped} full-queue retries");
    }

    [Fact]
    public async Task RandomFramesFromAnAuthenticatedPeerNeverCrashTheListener()
    {
        int seed = Random.Shared.Next();
        _output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        byte[] secret = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        await using var b = await Node.StartAsync(2, o => o.ClusterSecret = secret);
        const int rounds = 25;
        for (int round = 0; round < rounds; round++)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(b.Transport.ListenEndPoint!);
            await using var stream = new NetworkStream(socket);
            var reader = System.IO.Pipelines.PipeReader.Create(stream);
            var writer = System.IO.Pipelines.PipeWriter.Create(stream);
            await DialAsync(reader, writer, secret, new NodeId(1), new NodeId(2));

            // A valid frame with random bit flips, or random bytes behind a plausible header.
            byte[] frame;
            if (random.Next(2) == 0)
            {
                var body = new byte[4 + MessageCodec.GetEncodedLength(TestMessages.Heartbeat(1, 2))];
                BinaryPrimitives.WriteUInt32LittleEndian(body, 1);
                MessageCodec.Encode(TestMessages.Heartbeat(1, 2), body.AsSpan(4));
                var buffer = new ArrayBufferWriter<byte>();
                FrameCodec.WriteFrame(buffer, FrameType.Messages, body);
                frame = buffer.WrittenSpan.ToArray();
                int flips = random.Next(1, 4);
                for (int i = 0; i < flips; i++)
                {
                    int bit = random.Next(FrameCodec.HeaderBytes * 8, frame.Length * 8);
                    frame[bit / 8] ^= (byte)(1 << (bit % 8));
                }
            }
            else
            {
                var body = new byte[random.Next(0, 300)];
                random.NextBytes(body);
                var buffer = new ArrayBufferWriter<byte>();
                FrameCodec.WriteFrame(buffer, (FrameType)random.Next(1, 8), body);
                frame = buffer.WrittenSpan.ToArray();
            }

            try
            {
                await socket.SendAsync(frame);
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                // Reset by the listener: refused.
            }

            await AssertClosedByPeerAsync(socket);
        }

        // Whatever was delivered passed validation and came from node 1; the listener still serves peers.
        while (b.Received.Reader.TryRead(out var message))
        {
            Assert.Null(message.Validate());
            Assert.Equal(new NodeId(1), message.From);
        }

        await using var a = await Node.StartAsync(1, o => o.ClusterSecret = secret);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 77));
        Assert.Equal(77UL, (await b.ReceiveAsync()).Round);
    }

    private static async Task DialAsync(
        System.IO.Pipelines.PipeReader reader, System.IO.Pipelines.PipeWriter writer, byte[]? secret, NodeId from, NodeId to)
    {
        var hello = new Handshake.Hello("test-cluster", from, to, Handshake.NewNonce());
        await PeerTransport.WriteFrameAsync(writer, FrameType.Hello, Handshake.EncodeHello(hello), CancellationToken.None);
        Assert.True(Handshake.TryDecodeChallenge(await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Challenge, CancellationToken.None), out var challenge));
        Assert.True(Handshake.Verify(Handshake.ListenerMac(secret, hello, challenge.Nonce), challenge.Mac));
        await PeerTransport.WriteFrameAsync(writer, FrameType.Proof, Handshake.EncodeProof(Handshake.DialerMac(secret, hello, challenge.Nonce)), CancellationToken.None);
        await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Accepted, CancellationToken.None);
    }

    private static async Task SendAndCloseAsync(Socket socket, byte[] bytes)
    {
        try
        {
            await socket.SendAsync(bytes);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // The listener may reset the connection before everything is sent; that is a refusal too.
        }
    }

    private static async Task AssertClosedByPeerAsync(Socket socket)
    {
        var buffer = new byte[1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token) > 0)
            {
                // Drain whatever the listener sent (a challenge) until it closes.
            }
        }
        catch (SocketException)
        {
            // A reset is a close too.
        }
    }
}
