using System.Net;
using System.Net.Sockets;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

/// <summary>
/// <see cref="PeerTransport.PeerConnectionLost"/>: raised when the peer's end of a link closes or resets or a dial
/// is refused (the peer's process is gone), never for a timeout (the peer may be alive behind a slow network).
/// </summary>
public sealed class ConnectionLostTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);
    private static readonly NodeId s_two = new(2);

    private static TaskCompletionSource<NodeId> WatchLost(Node node)
    {
        var lost = new TaskCompletionSource<NodeId>(TaskCreationOptions.RunContinuationsAsynchronously);
        node.Transport.PeerConnectionLost += id => lost.TrySetResult(id);
        return lost;
    }

    [Theory]
    [InlineData(true, false)] // a only dials b: the outbound link sees b's end close
    [InlineData(false, true)] // only b dials a: the inbound link ends
    [InlineData(true, true)]
    public async Task APeerThatStopsIsReportedLost(bool aDialsB, bool bDialsA)
    {
        await using var a = await Node.StartAsync(1);
        var b = await Node.StartAsync(2);
        await using (b)
        {
            var lost = WatchLost(a);
            if (aDialsB)
            {
                a.Transport.SetPeer(s_two, b.Address);
                a.Transport.Send(TestMessages.Heartbeat(1, 2));
                await b.ReceiveAsync();
            }

            if (bDialsA)
            {
                b.Transport.SetPeer(new NodeId(1), a.Address);
                b.Transport.Send(TestMessages.Heartbeat(2, 1));
                await a.ReceiveAsync();
            }

            Assert.False(lost.Task.IsCompleted);
            await b.DisposeAsync();
            Assert.Equal(s_two, await lost.Task.WaitAsync(s_wait));
        }
    }

    [Fact]
    public async Task ARefusedDialIsReportedLost()
    {
        using var closed = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        closed.Bind(new IPEndPoint(IPAddress.Loopback, 0)); // bound, never listening: connects are refused
        await using var a = await Node.StartAsync(1);
        var lost = WatchLost(a);
        a.Transport.SetPeer(s_two, closed.LocalEndPoint!.ToString()!);
        a.Transport.Send(TestMessages.Heartbeat(1, 2));
        Assert.Equal(s_two, await lost.Task.WaitAsync(s_wait));
    }

    [Fact]
    public async Task AHandshakeTimeoutIsNotReportedLost()
    {
        // A listener that accepts and then says nothing: a peer we cannot tell from a slow one.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        await using var a = await Node.StartAsync(1, o => o.HandshakeTimeout = TimeSpan.FromMilliseconds(200));
        var lost = WatchLost(a);
        int unreachable = 0;
        a.Transport.PeerUnreachable += _ => Interlocked.Increment(ref unreachable);
        a.Transport.SetPeer(s_two, listener.LocalEndPoint!.ToString()!);

        // Two rounds: by the second failure, the first one's decision about a lost connection has been made.
        for (int round = 1; round <= 2; round++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2));
            using var accepted = await listener.AcceptAsync().WaitAsync(s_wait);
            await Wait.UntilAsync(() => Volatile.Read(ref unreachable) >= round, $"handshake timeout {round}");
        }

        Assert.False(lost.Task.IsCompleted);
    }

    [Fact]
    public async Task AWriteTimeoutIsNotReportedLost()
    {
        // A fake listener that completes the handshake, then never reads again, holding its end open.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        await using var a = await Node.StartAsync(1, o =>
        {
            o.WriteTimeout = TimeSpan.FromMilliseconds(300);
            o.HandshakeTimeout = TimeSpan.FromSeconds(30); // this test plays the listener's side by hand, maybe slowly
        });
        var lost = WatchLost(a);
        var completed = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Transport.SnapshotSendCompleted += (_, ok) => completed.TrySetResult(ok);
        a.Transport.SetPeer(s_two, listener.LocalEndPoint!.ToString()!);
        a.Transport.Send(TestMessages.Snapshot(1, 2, new byte[64 * 1024 * 1024]));

        using var accepted = await listener.AcceptAsync();
        await using var stream = new NetworkStream(accepted);
        var reader = System.IO.Pipelines.PipeReader.Create(stream);
        var writer = System.IO.Pipelines.PipeWriter.Create(stream);
        await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Hello, CancellationToken.None);
        await PeerTransport.WriteFrameAsync(writer, FrameType.Challenge, Handshake.EncodeChallenge(new Handshake.Challenge(s_two, new NodeId(1), Handshake.NewNonce(), [])), CancellationToken.None);
        await PeerTransport.ReadHandshakeFrameAsync(reader, FrameType.Proof, CancellationToken.None);
        await PeerTransport.WriteFrameAsync(writer, FrameType.Accepted, [], CancellationToken.None);

        // The snapshot's failure is reported after the decision about the lost connection, so this is no race.
        Assert.False(await completed.Task.WaitAsync(s_wait));
        Assert.True(a.Transport.ConnectionFailures >= 1);
        Assert.False(lost.Task.IsCompleted);
    }

    [Fact]
    public async Task PeersAreDialedBeforeAnythingIsSentAndRedialedAfterTheyReturn()
    {
        // A follower must reach the other follower at once when the leader dies, not first dial it.
        await using var a = await Node.StartAsync(1);
        var b = await Node.StartAsync(2);
        string address = b.Address;
        a.Transport.SetPeer(s_two, address);
        await Wait.UntilAsync(() => a.Transport.IsConnected(s_two), "a dials b with nothing to send");
        var lost = WatchLost(a);
        await b.DisposeAsync();
        await lost.Task.WaitAsync(s_wait);

        await using var again = await Node.StartAsync(2, o => o.ListenEndPoint = IPEndPoint.Parse(address));
        await Wait.UntilAsync(() => a.Transport.IsConnected(s_two), "a redials b once it is back");
        Assert.Equal(0, a.Transport.MessagesSent);
    }

    [Fact]
    public async Task WithoutKeepConnectedPeersAreDialedOnTheFirstMessage()
    {
        await using var a = await Node.StartAsync(1, o => o.KeepConnected = false);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(s_two, b.Address);
        Assert.False(a.Transport.IsConnected(s_two));
        a.Transport.Send(TestMessages.Heartbeat(1, 2));
        await b.ReceiveAsync();
        Assert.True(a.Transport.IsConnected(s_two));
    }
}
