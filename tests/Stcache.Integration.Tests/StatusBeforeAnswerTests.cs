using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A request answered for an applied entry (a write, a membership change, an applied-index wait) is answered after
/// the status that shows the entry is published: a client that hears "removed" and reads /v1/status at once sees
/// the member gone. The driver tests read the status from inside the answer, on the driver's thread, so they fail
/// every time an answer comes before its status; the host test reads it right after each await, many times.
/// </summary>
public sealed class StatusBeforeAnswerTests
{
    [Fact]
    public void A_membership_change_is_answered_once_the_status_shows_it()
    {
        var driver = LeadingDriver();
        for (ulong learner = 2; learner < 12; learner++)
        {
            var id = new NodeId(learner);
            var (added, addedAt) = Change(driver, new ConfChange(ConfChangeType.AddLearner, id, ReadOnlyMemory<byte>.Empty));
            Assert.True(added.ConfState.IsLearner(id), $"learner {id} answered as added, but the status seen then lists {Describe(added)}");
            Assert.True(added.Applied >= addedAt, $"the addition at {addedAt} answered while the status showed {added.Applied} applied");

            var (removed, removedAt) = Change(driver, new ConfChange(ConfChangeType.RemoveNode, id, ReadOnlyMemory<byte>.Empty));
            Assert.False(removed.ConfState.IsMember(id), $"learner {id} answered as removed, but the status seen then lists {Describe(removed)}");
            Assert.True(removed.Applied >= removedAt, $"the removal at {removedAt} answered while the status showed {removed.Applied} applied");
        }
    }

    [Fact]
    public void Writes_and_applied_index_waits_are_answered_once_the_status_shows_their_index()
    {
        var driver = LeadingDriver();
        for (int round = 0; round < 10; round++)
        {
            // A wait for the index the writes will reach, then three writes proposed together (one Ready).
            var target = driver.Status.LastIndex + 3UL;
            var wait = new SeenRequest<LogIndex>(driver);
            driver.WaitForApplied(target, wait);
            var writes = Enumerable.Range(0, 3).Select(_ => new SeenWrite(driver)).ToList();
            driver.Propose([.. writes.Select(w => (ReadOnlyMemory<byte>)SingleNodeHost.Set("k" + round).Encode())], writes);
            driver.Process();

            foreach (var write in writes)
            {
                Assert.True(write.Seen is not null, write.Error?.Message ?? "a write was not answered within one Process");
                Assert.True(write.Seen.Applied >= write.Index, $"write at {write.Index} answered while the status showed {write.Seen.Applied} applied");
            }

            Assert.True(wait.Seen is not null, "the applied-index wait was not answered within one Process");
            Assert.True(wait.Seen.Applied >= target, $"wait for {target} answered while the status showed {wait.Seen.Applied} applied");
        }
    }

    [Fact]
    public async Task A_removal_over_the_host_is_seen_by_a_status_read_right_after_its_answer()
    {
        var (host, clock) = SingleNodeHost.Start();
        await using var running = host;
        await clock.ElectAsync(host);

        for (ulong learner = 2; learner < 102; learner++)
        {
            var member = new NodeId(learner);
            await host.ChangeMembershipAsync(new ConfChange(ConfChangeType.AddLearner, member, ReadOnlyMemory<byte>.Empty));
            Assert.True(host.Status.ConfState.IsLearner(member), $"round {learner}: added, but the status lists {Describe(host.Status)}");
            await host.ChangeMembershipAsync(new ConfChange(ConfChangeType.RemoveNode, member, ReadOnlyMemory<byte>.Empty));
            Assert.False(host.Status.ConfState.IsMember(member), $"round {learner}: removed, but the status lists {Describe(host.Status)}");
        }
    }

    private static string Describe(HostStatus status) =>
        $"voters [{string.Join(", ", status.ConfState.Voters)}] learners [{string.Join(", ", status.ConfState.Learners)}] applied {status.Applied}";

    /// <summary>A single voter's driver, ticked until it leads and has committed its first entry.</summary>
    private static NodeDriver LeadingDriver()
    {
        var options = SingleNodeHost.Options;
        var driver = new NodeDriver(options, SingleNodeHost.Log(), new MemorySnapshotStore(), new NoEffects(), new CacheStateMachine(),
            new MemberBook(), NullLogger.Instance, TimeProvider.System, readIdSeed: 1);
        for (long ticks = 1; !(driver.Status.IsLeader && driver.Status.Applied == driver.Status.LastIndex); ticks++)
        {
            Assert.True(ticks < 20L * options.Raft.ElectionTimeoutTicks, "the single voter did not elect itself");
            driver.Tick(ticks);
            driver.Process();
        }

        return driver;
    }

    /// <summary>Proposes <paramref name="change"/> and processes once: it must be answered, as applied.</summary>
    private static (HostStatus Seen, LogIndex Index) Change(NodeDriver driver, ConfChange change)
    {
        var request = new SeenWrite(driver);
        driver.ChangeMembership(change, request);
        driver.Process();
        Assert.True(request.Seen is not null, request.Error?.Message ?? $"{change.Type} {change.NodeId} was not answered within one Process");
        return (request.Seen, request.Index);
    }

    /// <summary>Records the driver's published status at the moment it answers.</summary>
    private sealed class SeenWrite(NodeDriver driver) : ProposalRequest
    {
        public HostStatus? Seen { get; private set; }

        public RaftHostException? Error { get; private set; }

        public override void Complete(ApplyResult result) => Seen = driver.Status;

        public override void Fail(RaftHostException error) => Error = error;
    }

    private sealed class SeenRequest<T>(NodeDriver driver) : NodeRequest<T>
    {
        public HostStatus? Seen { get; private set; }

        public override void Complete(T result) => Seen = driver.Status;

        public override void Fail(RaftHostException error) => throw error;
    }

    private sealed class NoEffects : INodeEffects
    {
        public void Send(Message message)
        {
        }

        public void SendSnapshot(Message message)
        {
        }

        public void SaveSnapshot(SnapshotJob job) => job.Run();
    }
}
