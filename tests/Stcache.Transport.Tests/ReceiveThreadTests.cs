using System.Net.Sockets;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

/// <summary>
/// Inbound plaintext connections served on a thread of their own (<see cref="TransportOptions.ReceiveThreads"/>):
/// messages arrive on that thread, and every way a session ends (the peer closing, the peer's removal, the
/// transport's disposal, a silent dialer's handshake timeout) ends its thread.
/// </summary>
public sealed class ReceiveThreadTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MessagesArriveOnTheConnectionsOwnThreadOrOnTheRuntimes(bool receiveThreads)
    {
        var threads = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2, o => o.ReceiveThreads = receiveThreads);
        b.Transport.JoinReceived += (_, _) => threads.Enqueue(Thread.CurrentThread.Name);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        for (ulong round = 1; round <= 50; round++)
        {
            a.Transport.Send(TestMessages.Heartbeat(1, 2, round));
        }

        var received = await b.ReceiveAsync(50);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (ulong)i), received.Select(m => m.Round));
        Assert.True(a.Transport.SendJoin(new NodeId(2), new JoinFrame(JoinFrameKind.Request, new byte[] { 1, 2, 3 })));
        await Wait.UntilAsync(() => !threads.IsEmpty, "the join frame is delivered");
        Assert.Equal(receiveThreads, threads.Single() == "peer-rx");
        Assert.Equal(receiveThreads ? 1 : 0, b.Transport.ReceiveThreadsRunning);
    }

    [Fact]
    public async Task DisposingTheTransportEndsItsReceiveThreads()
    {
        var a = await Node.StartAsync(1);
        var c = await Node.StartAsync(3);
        var b = await Node.StartAsync(2);
        try
        {
            a.Transport.SetPeer(new NodeId(2), b.Address);
            c.Transport.SetPeer(new NodeId(2), b.Address);
            a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
            c.Transport.Send(TestMessages.Heartbeat(3, 2, 1));
            await b.ReceiveAsync(2);
            Assert.Equal(2, b.Transport.ReceiveThreadsRunning);
            int before = PeerReceiveThreadsInProcess();

            // Both dialers stay connected: only the disposal can end the two blocked receives.
            await b.DisposeAsync();
            Assert.Equal(0, b.Transport.ReceiveThreadsRunning);
            Assert.Equal(0, b.Transport.ReceiveThreadYields);
            if (before >= 0)
            {
                // Other tests' transports may run their own; these two are gone (the kernel's own thread list).
                int after = await PeerReceiveThreadsInProcessAtMostAsync(before - 2);
                Assert.True(after <= before - 2, $"peer-rx threads {before} before, {after} after");
            }
        }
        finally
        {
            await b.DisposeAsync();
            await a.DisposeAsync();
            await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task RemovingThePeerOrItsClosingEndsTheThread()
    {
        await using var b = await Node.StartAsync(2, o => o.RemovedPeerDrain = TimeSpan.Zero);
        // The dialers redial only with something to send, so no new session replaces the ones that end.
        var a = await Node.StartAsync(1, o => o.KeepConnected = false);
        await using var c = await Node.StartAsync(3, o => o.KeepConnected = false);
        try
        {
            a.Transport.SetPeer(new NodeId(2), b.Address);
            c.Transport.SetPeer(new NodeId(2), b.Address);
            a.Transport.Send(TestMessages.Heartbeat(1, 2, 1));
            c.Transport.Send(TestMessages.Heartbeat(3, 2, 1));
            await b.ReceiveAsync(2);
            Assert.Equal(2, b.Transport.ReceiveThreadsRunning);

            // The removed peer's session is closed by the listener, though the dialer keeps its end open.
            b.Transport.SetPeer(new NodeId(1), a.Address);
            b.Transport.RemovePeer(new NodeId(1));
            await Wait.UntilAsync(() => b.Transport.ReceiveThreadsRunning == 1, "the removed peer's receive thread ends");

            // The dialer closing its end ends the other.
            await c.DisposeAsync();
            await Wait.UntilAsync(() => b.Transport.ReceiveThreadsRunning == 0, "the closed connection's receive thread ends");
            Assert.Equal(0, b.Transport.ReceiveThreadYields);
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    [Fact]
    public async Task ASilentDialerTimesOutWithoutAThreadLeftBehind()
    {
        await using var b = await Node.StartAsync(2, o => o.HandshakeTimeout = TimeSpan.FromMilliseconds(300));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(b.Transport.ListenEndPoint!);
        var buffer = new byte[16];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token));
        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused == 1 && b.Transport.ReceiveThreadsRunning == 0, "the silent dialer is refused");
        Assert.Equal(0, b.Transport.ReceiveThreadYields);

        // A real peer still gets through.
        await using var a = await Node.StartAsync(1);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 7));
        Assert.Equal(7UL, (await b.ReceiveAsync()).Round);
    }

    [Fact]
    public async Task AFrameLargerThanTheReceiveBufferArrivesWhole()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        var rng = new Random(5);
        byte[] big = new byte[(InboundSession.ReceiveBufferBytes * 3) + 17];
        rng.NextBytes(big);
        var append = new Message
        {
            Type = MessageType.Append,
            From = new NodeId(1),
            To = new NodeId(2),
            Term = new Term(2),
            LogTerm = new Term(1),
            Index = new LogIndex(10),
            Commit = new LogIndex(9),
            Entries = [new Entry(new Term(2), new LogIndex(11), EntryType.Normal, big)],
        };
        a.Transport.Send(append);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, 3));
        TestMessages.AssertSame(append, await b.ReceiveAsync());
        Assert.Equal(3UL, (await b.ReceiveAsync()).Round);
    }

    /// <summary>Threads of this process named peer-rx, from the kernel's list; -1 where there is no /proc.</summary>
    /// <summary>
    /// The kernel's count of peer-rx threads once it is at most <paramref name="limit"/>, or after 5 s. A thread
    /// leaves the kernel's list a moment after its session's task completes (its last act), and nothing signals
    /// that moment, so this polls.
    /// </summary>
    private static async Task<int> PeerReceiveThreadsInProcessAtMostAsync(int limit)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        int count = PeerReceiveThreadsInProcess();
        while (count > limit && waited.Elapsed < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(10);
            count = PeerReceiveThreadsInProcess();
        }

        return count;
    }

    private static int PeerReceiveThreadsInProcess()
    {
        const string tasks = "/proc/self/task";
        if (!Directory.Exists(tasks))
        {
            return -1;
        }

        int count = 0;
        foreach (string task in Directory.EnumerateDirectories(tasks))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).Trim() == "peer-rx")
                {
                    count++;
                }
            }
            catch (IOException)
            {
                // The thread ended while listed.
            }
        }

        return count;
    }
}
