using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// The set-up the in-process host tests share: node 1, the one voter of a cluster of itself, its real
/// <see cref="RaftHost"/> on a <see cref="FakeRaftClock"/>, with memory stores unless the test brings its own (a
/// gated, failing or real log; a snapshot store it watches).
/// </summary>
internal static class SingleNodeHost
{
    public static readonly NodeId Id = new(1);

    public static readonly MemberInfo Self = new(1, "n1", "127.0.0.1:1", "127.0.0.1:2");

    /// <summary>Node 1's bootstrap state: a configuration of itself alone.</summary>
    public static PersistentState Initial => PersistentState.Bootstrap([new ConfChange(ConfChangeType.AddVoter, Id, Self.ToContext())]);

    /// <summary>The options the tests start from, changed with <c>with</c>: 10 ms ticks, and a request timeout of 20 s,
    /// long beside the storage back-off (while the disk fails the fake clock runs ahead of the host, which takes no
    /// ticks then, so a short deadline could pass before a loaded machine let the host run its retry).</summary>
    public static RaftHostOptions Options { get; } = new()
    {
        Raft = new RaftConfig { Id = Id },
        Self = Self,
        TickInterval = TimeSpan.FromMilliseconds(10),
        RequestTimeout = TimeSpan.FromSeconds(20),
    };

    /// <summary>A log store in memory holding <see cref="Initial"/>, for a test that wraps it.</summary>
    public static MemoryLogStore Log() => new(Initial);

    /// <summary>Creates and starts the host (dispose it); <paramref name="log"/> must hold <see cref="Initial"/> or a
    /// later state of node 1.</summary>
    public static (RaftHost Host, FakeRaftClock Clock) Start(RaftHostOptions? options = null, IRaftLogStore? log = null, ISnapshotStore? snapshots = null)
    {
        options ??= Options;
        var clock = new FakeRaftClock(options.TickInterval);
        var host = new RaftHost(options, log ?? Log(), snapshots ?? new MemorySnapshotStore(), new NullPeerNetwork(), new CacheStateMachine(),
            new MemberBook(), NullLogger<RaftHost>.Instance, clock.Time);
        host.Start();
        return (host, clock);
    }

    /// <summary>Ticks the node until it elects itself, then writes through it.</summary>
    public static async Task<ApplyResult> WriteWhenLeaderAsync(RaftHost host, FakeRaftClock clock, string key, string value)
    {
        await clock.ElectAsync(host);
        return await clock.RunUntilAsync(host, host.ProposeAsync(Set(key, value)));
    }

    /// <summary>A SET of <paramref name="key"/>.</summary>
    public static CacheCommand Set(string key, string value = "v") => CacheCommand.Set(key, Encoding.UTF8.GetBytes(value));
}

/// <summary>
/// <see cref="SingleNodeHost"/> over a <see cref="GatedLogStore"/>, leading, its first write applied: for tests that
/// hold the loop inside a log save (a disk that stopped answering) and look at what queues meanwhile.
/// </summary>
internal sealed record GatedNode(RaftHost Host, GatedLogStore Store, FakeRaftClock Clock) : IAsyncDisposable
{
    public static async Task<GatedNode> StartLeadingAsync(RaftHostOptions? options = null)
    {
        var store = new GatedLogStore(SingleNodeHost.Log());
        var (host, clock) = SingleNodeHost.Start(options, store);
        var node = new GatedNode(host, store, clock);
        try
        {
            await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    /// <summary>Closes the gate and proposes a write of <paramref name="key"/>; returns it once the loop is held
    /// inside its save.</summary>
    public async Task<Task<ApplyResult>> HoldInSaveAsync(string key)
    {
        Store.Close();
        var write = Host.ProposeAsync(SingleNodeHost.Set(key));
        Assert.True(await Store.WaitUntilBlockedAsync(), "the loop never reached the held save");
        return write;
    }

    /// <summary>Opens the gate first: a loop held in a save would never stop.</summary>
    public async ValueTask DisposeAsync()
    {
        Store.Open();
        await Host.DisposeAsync();
        Store.Dispose();
    }
}
