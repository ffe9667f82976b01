using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// Under overload the control plane must not be what gets lost: peer messages and transport reports get into the
/// Raft loop however many client requests wait, and any that cannot are counted. Runs the real RaftHost in
/// process, its loop held inside a log save (a slow disk) while clients fill their queue.
/// </summary>
public sealed class RaftInputQueueTests
{
    [Fact]
    public async Task A_peer_message_gets_in_while_the_client_queue_is_full()
    {
        await using var node = await GatedNode.StartLeadingAsync(Queues(clientQueue: 4, raftQueue: 1024));
        var (host, store, clock) = node;
        var term = host.Status.Term;

        // Hold the loop in a save, then queue more client writes than the client queue holds: the first four
        // fill it, the rest wait for space (back-pressure).
        var writes = new List<Task<ApplyResult>> { await node.HoldInSaveAsync("held") };
        for (int i = 0; i < 8; i++)
        {
            writes.Add(host.ProposeAsync(Set("queued" + i)));
        }

        // A leader of a newer term speaks: it must get in, and this node must follow it.
        var newer = new Term(term.Value + 1);
        var follows = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.LeadershipChanged += change =>
        {
            if (change.Term >= newer)
            {
                follows.TrySetResult();
            }
        };
        host.Deliver(new Message { Type = MessageType.Heartbeat, From = new NodeId(2), To = host.Id, Term = newer });
        store.Open();

        bool followed = await Task.WhenAny(follows.Task, Task.Delay(TimeSpan.FromSeconds(20))) == follows.Task;
        Assert.True(followed, $"the heartbeat of term {newer} was lost: still at term {host.Status.Term}, {host.PeerInputsDropped} dropped");
        Assert.Equal(newer, host.Status.Term);

        Assert.Equal(0, host.PeerInputsDropped);

        // Deposed mid-way: each write either committed or failed with a clear error, by the request timeout at the
        // latest (fake time); none may hang.
        await clock.AdvanceUntilAsync(host, Task.WhenAll(writes), TimeSpan.FromSeconds(30));
        foreach (var write in writes)
        {
            try
            {
                await write;
            }
            catch (RaftHostException)
            {
            }
        }
    }

    [Fact]
    public async Task Peer_messages_beyond_a_full_raft_queue_are_counted_not_lost_silently()
    {
        const int capacity = 8;
        const int sent = 100;
        await using var node = await GatedNode.StartLeadingAsync(Queues(clientQueue: 4, raftQueue: capacity));
        var (host, store, clock) = node;
        var term = host.Status.Term;

        var held = await node.HoldInSaveAsync("held");
        for (int i = 0; i < sent; i++)
        {
            host.Deliver(new Message { Type = MessageType.HeartbeatResponse, From = new NodeId(2), To = host.Id, Term = term });
        }

        long dropped = host.PeerInputsDropped;
        store.Open();
        Assert.InRange(dropped, sent - capacity, sent);
        Assert.True((await clock.RunUntilAsync(host, held)).Succeeded);
    }

    private static RaftHostOptions Queues(int clientQueue, int raftQueue) =>
        SingleNodeHost.Options with { InputQueueCapacity = clientQueue, PeerInputQueueCapacity = raftQueue };

    private static CacheCommand Set(string key) => SingleNodeHost.Set(key);
}
