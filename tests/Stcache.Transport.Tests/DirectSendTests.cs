using System.Diagnostics;
using System.Net;
using System.Threading.Channels;
using Stcache.Raft;
using Xunit.Abstractions;

namespace Stcache.Transport.Tests;

/// <summary>
/// The send path on an idle plaintext link runs on the caller of <see cref="PeerTransport.Send"/> (the writer loop
/// resumes inline; see PeerSender's queue options and <c>AnIdleLinkSendsBeforeSendReturns</c>). Here: when the
/// peer's socket fills up, Send still returns at once, later messages wait in the queue behind the blocked write,
/// and the peer receives all of them in order once it reads again.
/// </summary>
public sealed class DirectSendTests
{
    private readonly ITestOutputHelper _output;

    public DirectSendTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public async Task AFullSocketNeverBlocksSendAndOrderHoldsAcrossTheFallbackToTheQueue()
    {
        using var gate = new ManualResetEventSlim(false);
        var received = Channel.CreateUnbounded<Message>();
        var options = new TransportOptions
        {
            NodeId = new NodeId(2),
            ClusterId = "test-cluster",
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
        };

        // The receiver's handler blocks until the gate opens, so it stops reading and the sender's socket fills.
        var b = new PeerTransport(options, m =>
        {
            gate.Wait();
            received.Writer.TryWrite(m);
        }, new ListLogger<PeerTransport>());
        await using var a = await Node.StartAsync(1, o => o.WriteTimeout = TimeSpan.FromMinutes(2));
        try
        {
            await b.StartAsync(CancellationToken.None);
            a.Transport.SetPeer(new NodeId(2), b.ListenEndPoint!.ToString());

            // 400 appends of 64 KiB: 25 MiB, beyond what loopback socket buffers hold.
            const int count = 400;
            byte[] value = new byte[64 * 1024];
            // The first connects the link; the receiver's handler then holds it, and the link is idle again.
            a.Transport.Send(Append(1, value));
            await Wait.UntilAsync(() => a.Transport.MessagesSent == 1, "the first append is written");

            var watch = Stopwatch.StartNew();
            var sending = Task.Run(() =>
            {
                for (int i = 2; i <= count; i++)
                {
                    a.Transport.Send(Append((ulong)i, value));
                }
            });

            // Were Send to wait for the socket, this would never complete while the gate is shut.
            await sending.WaitAsync(TimeSpan.FromSeconds(60));
            _output.WriteLine($"{count} sends returned in {watch.Elapsed.TotalMilliseconds:F0} ms; {a.Transport.MessagesSent} written so far");
            long written = a.Transport.MessagesSent;
            Assert.True(written > 1, "nothing was written straight after the first append");
            Assert.True(written < count, "the socket never filled, so nothing fell back to the queue");
            Assert.Equal(0, a.Transport.MessagesDropped);

            gate.Set();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            for (int i = 1; i <= count; i++)
            {
                var message = await received.Reader.ReadAsync(timeout.Token);
                Assert.Equal((ulong)i, message.Index.Value);
                Assert.Equal(value.Length, message.Entries[0].Data.Length);
            }

            await Wait.UntilAsync(() => a.Transport.MessagesSent == count, "every send is counted");
        }
        finally
        {
            gate.Set();
            await b.DisposeAsync();
        }
    }

    private static Message Append(ulong index, byte[] value) => new()
    {
        Type = MessageType.Append,
        From = new NodeId(1),
        To = new NodeId(2),
        Term = new Term(2),
        LogTerm = new Term(2),
        Index = new LogIndex(index),
        Commit = new LogIndex(index),
        Entries = [new Entry(new Term(2), new LogIndex(index + 1), EntryType.Normal, value)],
    };
}
