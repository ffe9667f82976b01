using System.Text;
using Stcache.Node;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// The host under <c>--wal-pipeline true</c>: its writer thread holds the log save while the loop goes on taking
/// input; nothing the held save carries is acknowledged until it ends; the batch queued behind it shares its
/// sync; a refused save is retried on the host's clock as the loop's own save is.
/// </summary>
public sealed class WalPipelineTests
{
    private static RaftHostOptions Pipelined => SingleNodeHost.Options with
    {
        Raft = SingleNodeHost.Options.Raft with { AsyncStorageWrites = true },
    };

    [Fact]
    public async Task The_loop_serves_a_linearizable_read_while_the_writer_is_held_in_a_save()
    {
        await using var node = await GatedNode.StartLeadingAsync(Pipelined);
        var (host, store, clock) = node;
        var held = await node.HoldInSaveAsync("held");
        var queued = host.ProposeAsync(SingleNodeHost.Set("queued"));

        // The read is confirmed and served by the loop while the writer sits in its save (without the pipeline the
        // loop itself is held there, and the read waits for the disk).
        var read = await host.ReadBarrierAsync(lease: false).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.False(held.IsCompleted, "a write was acknowledged before its save returned");
        Assert.False(queued.IsCompleted, "a write was acknowledged before its save returned");
        Assert.False(host.Cache.TryGet("held", out _), "an entry was applied before the local persist");

        store.Open();
        Assert.True((await clock.RunUntilAsync(host, held)).Succeeded);
        Assert.True((await clock.RunUntilAsync(host, queued)).Succeeded);
        Assert.True(host.Cache.TryGet("queued", out var value));
        Assert.Equal("v", Encoding.UTF8.GetString(value!.Value));
    }

    /// <summary>A failing store that tells when a save next succeeds.</summary>
    private sealed class WatchedStore(DiskFullTests.FailingLogStore inner) : IRaftLogStore
    {
        private TaskCompletionSource? _next;

        public DiskFullTests.FailingLogStore Inner => inner;

        public Task NextSaveAsync()
        {
            var next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _next, next);
            return next.Task;
        }

        public PersistentState Load() => inner.Load();

        public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
        {
            bool wrote = inner.Save(hardState, entries);
            Interlocked.Exchange(ref _next, null)?.TrySetResult();
            return wrote;
        }

        public void ApplySnapshot(SnapshotMetadata snapshot) => inner.ApplySnapshot(snapshot);

        public void Compact(LogIndex upTo) => inner.Compact(upTo);
    }

    [Fact]
    public async Task A_refused_save_is_retried_and_nothing_of_it_is_acknowledged_meanwhile()
    {
        var store = new WatchedStore(new DiskFullTests.FailingLogStore(SingleNodeHost.Log()));
        var (host, clock) = SingleNodeHost.Start(Pipelined, store);
        await using var running = host;
        Assert.True((await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "before", "1")).Succeeded);

        store.Inner.Full = true;
        var refused = await Assert.ThrowsAsync<RaftHostException>(() => clock.RunUntilAsync(host, host.ProposeAsync(SingleNodeHost.Set("during", "2"))));
        Assert.True(refused.OutcomeUnknown, refused.Message);
        Assert.True(host.StorageFailing);
        Assert.True(store.Inner.Refused > 0);
        Assert.False(host.Completion.IsCompleted, "the node must stay up while its disk is full");

        // The writer retries after its back-off (at most 5 s) on the host's clock. The fake clock runs ahead of a
        // failing node without waiting for it, so the retry is awaited before the next write is timed.
        var saved = store.NextSaveAsync();
        store.Inner.Full = false;
        // The writer may arm its back-off timer only after an advance (its thread races this one): advance again until
        // the retry's save lands, within 20 s of real time.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!saved.IsCompleted && waited.Elapsed < TimeSpan.FromSeconds(20))
        {
            clock.Time.Advance(TimeSpan.FromSeconds(5));
            await Task.WhenAny(saved, Task.Delay(50));
        }

        await saved.WaitAsync(TimeSpan.FromSeconds(1));
        Assert.True((await clock.RunUntilAsync(host, host.ProposeAsync(SingleNodeHost.Set("after", "3")))).Succeeded);
        Assert.False(host.StorageFailing);
        Assert.True(host.Cache.TryGet("before", out _));
        Assert.True(host.Cache.TryGet("during", out _), "the refused batch is written once the disk takes it");
        Assert.True(host.Cache.TryGet("after", out _));
    }
}

/// <summary>--wal-pipeline: true (a leader pipelines), all (followers too), false (the default: the loop saves).</summary>
public sealed class WalPipelineFlagTests
{
    private static readonly string[] s_base = ["--http=127.0.0.1:6000", "--raft=127.0.0.1:7000", "--node=./node0", "-bootstrap=true"];

    [Fact]
    public void The_flag_takes_true_all_or_false_and_defaults_to_false()
    {
        var options = CommandLine.Parse(s_base);
        Assert.False(options.WalPipeline);
        Assert.False(options.WalPipelineFollowers);

        options = CommandLine.Parse([.. s_base, "--wal-pipeline", "true"]);
        Assert.True(options.WalPipeline);
        Assert.False(options.WalPipelineFollowers);

        options = CommandLine.Parse([.. s_base, "--wal-pipeline", "false"]);
        Assert.False(options.WalPipeline);

        options = CommandLine.Parse([.. s_base, "--wal-pipeline=all"]);
        Assert.True(options.WalPipeline);
        Assert.True(options.WalPipelineFollowers);

        Assert.Throws<UsageException>(() => CommandLine.Parse([.. s_base, "--wal-pipeline=sometimes"]));
    }
}
