using Stcache.Storage;

namespace Stcache.Integration.Tests;

/// <summary>
/// A requested snapshot is answered once it is saved, by the wake its save queues, and by nothing else: the host
/// here takes no ticks after its election, as <c>stcachectl recover</c>'s host takes none. The loop used to decide
/// by the save's task, which completes only after it queued that wake; a loop quick enough to take the wake first
/// collected nothing, and the requester waited for good (CI's recovery test once; 1 in 6 to 1 in 17 runs of
/// <c>stcachectl recover</c> in a loop). Real snapshot files, so that the loop is parked when the save ends.
/// </summary>
public sealed class SnapshotWakeTests : IDisposable
{
    private const int Snapshots = 200;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "stcache-snapwake-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public async Task Every_requested_snapshot_is_answered_without_ticks()
    {
        var options = SingleNodeHost.Options with { SnapshotInterval = TimeSpan.FromDays(1), SnapshotThreshold = ulong.MaxValue };
        var (host, clock) = SingleNodeHost.Start(options, snapshots: FileSnapshotStore.Open(_directory));
        await using (host)
        {
            await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "first", "v");
            for (int i = 0; i < Snapshots; i++)
            {
                // A single voter commits without ticks; the clock stays where it is from here on.
                await host.ProposeAsync(SingleNodeHost.Set("key" + i)).WaitAsync(TimeSpan.FromSeconds(30));
                var snapshot = host.SnapshotAsync();
                var answered = await Task.WhenAny(snapshot, Task.Delay(TimeSpan.FromSeconds(30)));
                Assert.True(answered == snapshot, $"snapshot {i + 1} of {Snapshots} was never answered");
                Assert.Equal(host.Status.Applied, (await snapshot).Index);
            }
        }
    }
}
