using System.Collections.Concurrent;
using System.Net;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

/// <summary>Captures log records (with the exception's message after a '|') so tests can assert on warnings.</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, EventId EventId, string Text)> Records { get; } = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Records.Enqueue((logLevel, eventId, exception is null ? formatter(state, exception) : $"{formatter(state, exception)} | {exception.Message}"));

    public bool Has(LogLevel level, int eventId) => Records.Any(r => r.Level == level && r.EventId.Id == eventId);
}

/// <summary>A started transport plus what it received.</summary>
internal sealed class Node : IAsyncDisposable
{
    private Node(PeerTransport transport, Channel<Message> received, ListLogger<PeerTransport> logger)
    {
        Transport = transport;
        Received = received;
        Logger = logger;
    }

    public PeerTransport Transport { get; }

    public Channel<Message> Received { get; }

    public ListLogger<PeerTransport> Logger { get; }

    public string Address => Transport.ListenEndPoint!.ToString();

    public static async Task<Node> StartAsync(ulong id, Action<TransportOptions>? configure = null)
    {
        var options = new TransportOptions
        {
            NodeId = new NodeId(id),
            ClusterId = "test-cluster",
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            HandshakeTimeout = TimeSpan.FromSeconds(2),
            ConnectTimeout = TimeSpan.FromSeconds(2),
            ReconnectBackoffMin = TimeSpan.FromMilliseconds(10),
            ReconnectBackoffMax = TimeSpan.FromMilliseconds(200),
        };
        configure?.Invoke(options);
        var received = Channel.CreateUnbounded<Message>();
        var logger = new ListLogger<PeerTransport>();
        var transport = new PeerTransport(options, m => received.Writer.TryWrite(m), logger);
        await transport.StartAsync(CancellationToken.None);
        return new Node(transport, received, logger);
    }

    public async Task<Message> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        return await Received.Reader.ReadAsync(cts.Token);
    }

    public async Task<List<Message>> ReceiveAsync(int count, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var list = new List<Message>(count);
        while (list.Count < count)
        {
            list.Add(await Received.Reader.ReadAsync(cts.Token));
        }

        return list;
    }

    public ValueTask DisposeAsync() => Transport.DisposeAsync();
}

internal static class TestMessages
{
    public static Message Heartbeat(ulong from, ulong to, ulong round = 0) => new()
    {
        Type = MessageType.Heartbeat,
        From = new NodeId(from),
        To = new NodeId(to),
        Term = new Term(3),
        Commit = new LogIndex(7),
        Round = round,
    };

    public static Message Snapshot(ulong from, ulong to, byte[] data) => new()
    {
        Type = MessageType.Snapshot,
        From = new NodeId(from),
        To = new NodeId(to),
        Term = new Term(5),
        Snapshot = new Snapshot(
            new SnapshotMetadata(new LogIndex(1000), new Term(4), new ConfState([new NodeId(1), new NodeId(2), new NodeId(3)], [new NodeId(9)])),
            data),
    };

    /// <summary>A random message that passes <see cref="Message.Validate"/>.</summary>
    public static Message Random(Random random)
    {
        var type = (MessageType)random.Next(1, (int)MessageType.Probe + 1);
        ulong from = (ulong)random.Next(1, 6);
        ulong to = from + (ulong)random.Next(1, 4);
        ulong term = (ulong)random.NextInt64(1, long.MaxValue);
        ulong logTerm = (ulong)random.NextInt64(0, (long)Math.Min(term, long.MaxValue));
        ulong index = (ulong)random.NextInt64(0, long.MaxValue / 2);
        Entry[] entries = [];
        if (type == MessageType.Append)
        {
            entries = new Entry[random.Next(0, 6)];
            ulong entryTerm = logTerm;
            for (int i = 0; i < entries.Length; i++)
            {
                if (random.Next(3) == 0 && entryTerm < term)
                {
                    entryTerm++;
                }

                var data = new byte[random.Next(3) == 0 ? 0 : random.Next(1, 300)];
                random.NextBytes(data);
                var entryType = random.Next(4) == 0 ? EntryType.ConfChange : EntryType.Normal;
                entries[i] = new Entry(new Term(entryTerm), new LogIndex(index + (ulong)i + 1), entryType, data);
            }
        }

        Snapshot? snapshot = null;
        if (type == MessageType.Snapshot)
        {
            var data = new byte[random.Next(0, 2000)];
            random.NextBytes(data);
            var voters = Enumerable.Range(0, random.Next(0, 6)).Select(_ => new NodeId((ulong)random.NextInt64(1, long.MaxValue))).ToArray();
            var learners = Enumerable.Range(0, random.Next(0, 3)).Select(_ => new NodeId((ulong)random.NextInt64(1, long.MaxValue))).ToArray();
            snapshot = new Snapshot(
                new SnapshotMetadata(new LogIndex((ulong)random.NextInt64(1, long.MaxValue)), new Term(logTerm), new ConfState(voters, learners)),
                data);
        }

        return new Message
        {
            Type = type,
            From = new NodeId(from),
            To = new NodeId(to),
            Term = new Term(term),
            LogTerm = new Term(logTerm),
            Index = new LogIndex(index),
            Entries = entries,
            Commit = new LogIndex((ulong)random.NextInt64()),
            Reject = random.Next(2) == 0,
            RejectHint = new LogIndex((ulong)random.NextInt64()),
            Snapshot = snapshot,
            Campaign = type is MessageType.Vote or MessageType.PreVote ? (CampaignKind)random.Next(2) : CampaignKind.Election,
            Round = type is MessageType.Heartbeat or MessageType.HeartbeatResponse ? (ulong)random.NextInt64() : 0,
            RequestId = type is MessageType.ReadIndex or MessageType.ReadIndexResponse ? (ulong)random.NextInt64() : 0,
        };
    }

    public static void AssertSame(Message expected, Message actual)
    {
        Assert.Equal(expected.Type, actual.Type);
        Assert.Equal(expected.From, actual.From);
        Assert.Equal(expected.To, actual.To);
        Assert.Equal(expected.Term, actual.Term);
        Assert.Equal(expected.LogTerm, actual.LogTerm);
        Assert.Equal(expected.Index, actual.Index);
        Assert.Equal(expected.Commit, actual.Commit);
        Assert.Equal(expected.Reject, actual.Reject);
        Assert.Equal(expected.RejectHint, actual.RejectHint);
        Assert.Equal(expected.Campaign, actual.Campaign);
        Assert.Equal(expected.Round, actual.Round);
        Assert.Equal(expected.RequestId, actual.RequestId);
        Assert.Equal(expected.Entries.Length, actual.Entries.Length);
        for (int i = 0; i < expected.Entries.Length; i++)
        {
            Assert.Equal(expected.Entries[i].Term, actual.Entries[i].Term);
            Assert.Equal(expected.Entries[i].Index, actual.Entries[i].Index);
            Assert.Equal(expected.Entries[i].Type, actual.Entries[i].Type);
            Assert.True(expected.Entries[i].Data.Span.SequenceEqual(actual.Entries[i].Data.Span));
        }

        Assert.Equal(expected.Snapshot is null, actual.Snapshot is null);
        if (expected.Snapshot is not null)
        {
            Assert.Equal(expected.Snapshot.Metadata.Index, actual.Snapshot!.Metadata.Index);
            Assert.Equal(expected.Snapshot.Metadata.Term, actual.Snapshot.Metadata.Term);
            Assert.Equal(expected.Snapshot.Metadata.ConfState, actual.Snapshot.Metadata.ConfState);
            Assert.True(expected.Snapshot.Data.Span.SequenceEqual(actual.Snapshot.Data.Span));
        }
    }
}

internal static class Wait
{
    /// <summary>Polls a condition that has no completion signal (counters), bounded by a deadline.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting until {what}");
            }

            await Task.Delay(5);
        }
    }
}
