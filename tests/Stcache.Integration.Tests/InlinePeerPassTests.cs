using System.Collections.Concurrent;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;
using Xunit.Abstractions;

namespace Stcache.Integration.Tests;

/// <summary>
/// Who runs a pass of the Raft host (<see cref="RaftHostOptions.InlinePeerPasses"/>): a peer message delivered while
/// no pass runs is handled on the delivering thread (a peer link's receive thread), one delivered while the loop is
/// busy is queued for it; a sender's messages are stepped in order either way; a pass that leaves the driver waiting
/// hands the wait to the loop instead of blocking the receive thread; and stopping the host while receive threads
/// deliver and clients write leaves nothing hanging. Runs the real RaftHost in process.
/// </summary>
public sealed class InlinePeerPassTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(20);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_peer_message_delivered_while_the_loop_is_idle_is_handled_where_it_arrives(bool inline)
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPasses = inline, InlinePeerPassesOnLeader = true });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        int stepper = 0;
        host.PeerMessageStepping = _ => Volatile.Write(ref stepper, Environment.CurrentManagedThreadId);
        var newer = new Term(host.Status.Term.Value + 1);
        var follows = TermReached(host, newer);

        int deliverer = DeliverOnThread(host, Heartbeat(host, newer));
        if (inline)
        {
            // Handled before Deliver returned, on the delivering thread, its status published.
            Assert.Equal(deliverer, Volatile.Read(ref stepper));
            Assert.Equal(newer, host.Status.Term);
        }
        else
        {
            await follows.WaitAsync(s_limit);
            Assert.NotEqual(deliverer, Volatile.Read(ref stepper));
        }

        await follows.WaitAsync(s_limit);
    }

    [Fact]
    public async Task With_inline_passes_for_followers_only_a_leader_queues_its_peer_messages_for_the_loop()
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPassesOnLeader = false, InlinePeerPassesWhenIdle = false });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        var stepped = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.PeerMessageStepping = _ => stepped.TrySetResult(Environment.CurrentManagedThreadId);
        int deliverer = DeliverOnThread(host, new Message { Type = MessageType.Probe, From = new NodeId(2), To = host.Id, Term = host.Status.Term });
        Assert.NotEqual(deliverer, await stepped.Task.WaitAsync(s_limit));

        // Once it follows, a message is handled where it arrives again.
        var newer = new Term(host.Status.Term.Value + 1);
        var follows = TermReached(host, newer);
        DeliverOnThread(host, Heartbeat(host, newer));
        await follows.WaitAsync(s_limit);
        await WaitUntilIdleAsync(host);
        int onThread = 0;
        host.PeerMessageStepping = _ => Volatile.Write(ref onThread, Environment.CurrentManagedThreadId);
        int second = DeliverOnThread(host, Heartbeat(host, newer));
        Assert.Equal(second, Volatile.Read(ref onThread));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_follower_queues_an_append_with_entries_for_its_loop_unless_appends_are_handled_inline(bool appendsInline)
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerAppends = appendsInline, InlinePeerPassesWhenIdle = false });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        // It follows node 2 (a heartbeat is handled where it arrives either way), then node 2 sends it an entry.
        var (append, stepped) = await FollowNode2WithAnAppendAsync(host);
        int deliverer = DeliverOnThread(host, append);
        int stepper = await stepped.Task.WaitAsync(s_limit);
        if (appendsInline)
        {
            Assert.Equal(deliverer, stepper);
        }
        else
        {
            Assert.NotEqual(deliverer, stepper);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_idle_leader_handles_a_peer_message_where_it_arrives_unless_the_senders_next_is_already_here(bool moreReceived)
    {
        // Followers-only inline passes (the default), with the idle rule (the default too).
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options);
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);
        Assert.True(host.Status.IsLeader);

        var stepped = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.PeerMessageStepping = _ => stepped.TrySetResult(Environment.CurrentManagedThreadId);
        int deliverer = DeliverOnThread(host, new Message { Type = MessageType.Probe, From = new NodeId(2), To = host.Id, Term = host.Status.Term }, moreReceived);
        int stepper = await stepped.Task.WaitAsync(s_limit);
        if (moreReceived)
        {
            Assert.NotEqual(deliverer, stepper); // queued, to be taken with the message behind it
        }
        else
        {
            Assert.Equal(deliverer, stepper);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_idle_follower_saves_an_append_with_entries_where_it_arrives_unless_the_senders_next_is_already_here(bool moreReceived)
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options);
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        var (append, stepped) = await FollowNode2WithAnAppendAsync(host);
        int deliverer = DeliverOnThread(host, append, moreReceived);
        int stepper = await stepped.Task.WaitAsync(s_limit);
        if (moreReceived)
        {
            Assert.NotEqual(deliverer, stepper);
        }
        else
        {
            // Stepped, saved and published before Deliver returned.
            Assert.Equal(deliverer, stepper);
            Assert.Equal(append.Entries[0].Index, host.Status.LastIndex); // the entry it carried
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_write_answered_by_a_pass_on_a_receive_thread_is_resumed_there_after_the_pass_or_else_on_the_pool(bool resume)
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPassesOnLeader = true, ResumeOnDeliveringThread = resume });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        // The receive thread's pass is held while it steps its message; a write queued meanwhile is taken by that
        // pass (the loop, woken for it, waits for the gate), committed there (one voter) and answered.
        using var stepping = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        host.PeerMessageStepping = _ =>
        {
            stepping.Set();
            Assert.True(release.Wait(s_limit));
        };
        int deliverer = 0;
        var thread = new Thread(() =>
        {
            deliverer = Environment.CurrentManagedThreadId;
            host.Deliver(new Message { Type = MessageType.Probe, From = new NodeId(2), To = host.Id, Term = host.Status.Term });
        });
        thread.Start();
        Assert.True(stepping.Wait(s_limit), "the message was not stepped");

        var batch = host.StartProposals([SingleNodeHost.Set("lone").Encode()], s_limit, CancellationToken.None);
        var resumed = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
#pragma warning disable CA2012 // awaited once, through its awaiter
        batch.WaitAsync().GetAwaiter().UnsafeOnCompleted(() => resumed.TrySetResult(Environment.CurrentManagedThreadId));
#pragma warning restore CA2012
        host.PeerMessageStepping = null;
        release.Set();
        Assert.True(thread.Join(s_limit), "Deliver did not return");

        int resumedOn = await resumed.Task.WaitAsync(s_limit);
        Assert.Null(batch.Slots[0].Error);
        if (resume)
        {
            Assert.Equal(deliverer, resumedOn);
        }
        else
        {
            Assert.NotEqual(deliverer, resumedOn);
        }
    }

    [Fact]
    public async Task An_idle_leader_proposes_and_saves_a_lone_write_on_the_loop_not_the_proposing_thread()
    {
        // A proposing thread (a front end's) only queues: it never waits through a pass's fsync.
        var store = new RefusingLogStore(SingleNodeHost.Log());
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options, log: store);
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        int taker = 0;
        host.ProposalTaking = _ => Volatile.Write(ref taker, Environment.CurrentManagedThreadId);
        int proposer = 0;
        ProposalBatch? batch = null;
        var thread = new Thread(() =>
        {
            proposer = Environment.CurrentManagedThreadId;
            batch = host.StartProposals([SingleNodeHost.Set("lone").Encode()], s_limit, CancellationToken.None);
        });
        thread.Start();
        Assert.True(thread.Join(s_limit), "StartProposals did not return");
        await batch!.WaitAsync().AsTask().WaitAsync(s_limit);
        Assert.Null(batch.Slots[0].Error);
        Assert.NotEqual(0, Volatile.Read(ref taker));
        Assert.NotEqual(proposer, Volatile.Read(ref taker));
        Assert.NotEqual(proposer, store.SavedOn);
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 1)]
    [InlineData(true, 3)]
    [InlineData(false, 3)]
    public async Task Writes_the_loop_answers_are_all_resumed_on_the_loop_after_its_pass_or_else_on_the_pool(bool resume, int batchCount)
    {
        // Proposals are queued for the loop, so the loop's pass answers the writes.
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { ResumeOnLoop = resume });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        await WaitUntilIdleAsync(host);

        // The loop's pass waits as it takes the first batch until every batch is queued and awaited: it takes them
        // all, proposes them together and answers them in one pass.
        using var queued = new ManualResetEventSlim();
        host.ProposalTaking = _ => Assert.True(queued.Wait(s_limit));
        var resumed = new List<Task<(bool InLoop, bool PassRunning)>>();
        var batches = new List<ProposalBatch>();
        for (int i = 0; i < batchCount; i++)
        {
            var batch = host.StartProposals([SingleNodeHost.Set("together" + i).Encode()], s_limit, CancellationToken.None);
            var where = new TaskCompletionSource<(bool InLoop, bool PassRunning)>(TaskCreationOptions.RunContinuationsAsynchronously);
#pragma warning disable CA2012 // awaited once, through its awaiter
            batch.WaitAsync().GetAwaiter().UnsafeOnCompleted(() =>
                where.TrySetResult((new System.Diagnostics.StackTrace().ToString().Contains("RunLoopAsync", StringComparison.Ordinal), host.PassRunning)));
#pragma warning restore CA2012
            batches.Add(batch);
            resumed.Add(where.Task);
        }

        queued.Set();
        foreach (var (batch, where) in batches.Zip(resumed))
        {
            var (inLoop, passRunning) = await where.WaitAsync(s_limit);
            Assert.Null(batch.Slots[0].Error);
            Assert.Equal(resume, inLoop);
            if (resume)
            {
                Assert.False(passRunning); // after the loop released the gate
            }
        }
    }

    [Fact]
    public async Task A_peer_message_delivered_while_the_loop_is_busy_is_queued_for_the_loop()
    {
        await using var node = await GatedNode.StartLeadingAsync();
        var (host, store, clock) = node;
        var held = await node.HoldInSaveAsync("held"); // the loop is inside a save, holding the pass
        Assert.True(host.PassRunning);

        int stepper = 0;
        host.PeerMessageStepping = _ => Volatile.Write(ref stepper, Environment.CurrentManagedThreadId);
        var newer = new Term(host.Status.Term.Value + 1);
        var follows = TermReached(host, newer);

        int deliverer = DeliverOnThread(host, Heartbeat(host, newer));
        Assert.Equal(0, Volatile.Read(ref stepper)); // returned without handling it: it waits in the queue
        Assert.NotEqual(newer, host.Status.Term);

        store.Open();
        await follows.WaitAsync(s_limit);
        Assert.NotEqual(0, Volatile.Read(ref stepper));
        Assert.NotEqual(deliverer, Volatile.Read(ref stepper));
        await clock.AdvanceUntilAsync(host, Settled(held)); // deposed: applied, or failed by its deadline
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Each_senders_messages_are_stepped_in_order_under_contention(bool inline)
    {
        const int perPeer = 3000;
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPasses = inline, InlinePeerPassesOnLeader = true });
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        var term = host.Status.Term;

        // Probes carry nothing the core acts on; their round numbers them per sender. The hook runs inside a pass.
        var stepped = new Dictionary<NodeId, List<ulong>> { [new NodeId(2)] = [], [new NodeId(3)] = [] };
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int onDeliverers = 0;
        var delivererIds = new ConcurrentDictionary<int, bool>();
        host.PeerMessageStepping = message =>
        {
            stepped[message.From].Add(message.Round);
            if (delivererIds.ContainsKey(Environment.CurrentManagedThreadId))
            {
                onDeliverers++;
            }

            if (stepped.Values.All(rounds => rounds.Count == perPeer))
            {
                all.TrySetResult();
            }
        };

        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            int written = 0;
            while (!stop.IsCancellationRequested)
            {
                Assert.True((await host.ProposeAsync(SingleNodeHost.Set($"w{w}-{written++ % 50}"))).Succeeded);
            }

            return written;
        })).ToArray();

        var senders = new[] { new NodeId(2), new NodeId(3) }.Select(from => new Thread(() =>
        {
            delivererIds[Environment.CurrentManagedThreadId] = true;
            for (ulong round = 0; round < perPeer; round++)
            {
                host.Deliver(new Message { Type = MessageType.Probe, From = from, To = host.Id, Term = term, Round = round });
            }
        })).ToArray();
        foreach (var sender in senders)
        {
            sender.Start();
        }

        foreach (var sender in senders)
        {
            Assert.True(sender.Join(s_limit), "a delivering thread hung");
        }

        // The last probes may still wait in the queue for the loop.
        await stop.CancelAsync();
        int writes = (await Task.WhenAll(writers).WaitAsync(s_limit)).Sum();
        Assert.Equal(0, host.PeerInputsDropped);
        await all.Task.WaitAsync(s_limit);
        foreach (var (from, rounds) in stepped)
        {
            Assert.Equal(perPeer, rounds.Count);
            for (int i = 0; i < rounds.Count; i++)
            {
                Assert.True(rounds[i] == (ulong)i, $"node {from}'s message {rounds[i]} stepped in place {i}");
            }
        }

        Assert.True(writes > 0);
        if (!inline)
        {
            Assert.Equal(0, onDeliverers);
        }

        // With the option on, how many ran inline depends on how often the writers leave the loop idle (on a loaded
        // machine, sometimes none: the test above checks the inline path itself).
        output.WriteLine($"{onDeliverers} of {2 * perPeer} messages stepped on their delivering thread, {writes} writes");
    }

    [Fact]
    public async Task A_pass_that_must_wait_for_storage_hands_the_wait_to_the_loop()
    {
        var (host, clock, store) = await StartIdleLeaderAsync();
        await using var running = host;

        var stepped = new ConcurrentQueue<(ulong Round, int Thread)>();
        var second = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.PeerMessageStepping = message =>
        {
            stepped.Enqueue((message.Round, Environment.CurrentManagedThreadId));
            if (message.Round == 2)
            {
                second.TrySetResult();
            }
        };
        var newer = new Term(host.Status.Term.Value + 1);
        var follows = TermReached(host, newer);

        // A newer term must be saved before it is acted on; the disk refuses: the driver waits for a retry.
        store.Full = true;
        store.SavedOn = 0;
        int deliverer = DeliverOnThread(host, Heartbeat(host, newer) with { Round = 1 });
        Assert.Equal(new[] { (1UL, deliverer) }, stepped.ToArray()); // stepped on its thread, which did not stay for the retry
        Assert.True(store.Refused > 0);
        Assert.True(host.StorageFailing);

        // Meanwhile a message queues for the loop.
        int secondDeliverer = DeliverOnThread(host, new Message { Type = MessageType.Probe, From = new NodeId(2), To = host.Id, Term = newer, Round = 2 });
        Assert.Single(stepped);

        // The loop retries, and only then takes the queued message.
        store.Full = false;
        await clock.AdvanceUntilAsync(host, second.Task, s_limit);
        await follows.WaitAsync(s_limit);
        Assert.True(host.Status.Term >= newer);
        Assert.False(host.StorageFailing);
        Assert.NotEqual(0, store.SavedOn);
        Assert.NotEqual(deliverer, store.SavedOn); // the retry that succeeded ran on the loop
        Assert.Equal(2, stepped.Count);
        Assert.NotEqual(secondDeliverer, stepped.Last().Thread);
    }

    [Fact]
    public async Task A_pass_that_fails_on_a_delivering_thread_stops_the_node_as_a_failure_of_the_loop_would()
    {
        var (host, clock, store) = await StartIdleLeaderAsync();
        await using var running = host;

        var stepped = new ConcurrentQueue<int>();
        host.PeerMessageStepping = _ => stepped.Enqueue(Environment.CurrentManagedThreadId);
        store.Broken = true; // not a refusal (IOException) but a bug: the driver does not catch it

        int deliverer = DeliverOnThread(host, Heartbeat(host, new Term(host.Status.Term.Value + 1)));
        Assert.Equal(new[] { deliverer }, stepped.ToArray());
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => host.Completion.WaitAsync(s_limit));
        Assert.Equal(RefusingLogStore.BrokenMessage, failure.Message);

        // Nothing runs a pass any more: a later message is not stepped.
        DeliverOnThread(host, Heartbeat(host, new Term(host.Status.Term.Value + 2)));
        Assert.Single(stepped);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Stopping_while_receive_threads_deliver_and_clients_write_leaves_nothing_hanging(bool inline)
    {
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPasses = inline, InlinePeerPassesOnLeader = true });
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
        var term = host.Status.Term;

        var busy = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int count = 0;
        host.PeerMessageStepping = _ =>
        {
            if (++count == 500)
            {
                busy.TrySetResult();
            }
        };

        using var stop = new CancellationTokenSource();
        var senders = new[] { new NodeId(2), new NodeId(3) }.Select(from => new Thread(() =>
        {
            for (ulong round = 0; !stop.IsCancellationRequested; round++)
            {
                host.Deliver(new Message { Type = MessageType.Probe, From = from, To = host.Id, Term = term, Round = round });
            }
        })).ToArray();
        foreach (var sender in senders)
        {
            sender.Start();
        }

        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (int i = 0; ; i++)
            {
                try
                {
                    await host.ProposeAsync(SingleNodeHost.Set($"w{w}-{i % 50}"));
                }
                catch (RaftHostException)
                {
                    // Stopped under it: "shutting down", or "not applied" for a write the loop never took.
                    Assert.True(stop.IsCancellationRequested || busy.Task.IsCompleted);
                    return;
                }
            }
        })).ToArray();

        try
        {
            await busy.Task.WaitAsync(s_limit);
            await host.DisposeAsync().AsTask().WaitAsync(s_limit);
            Assert.True(host.Completion.IsCompletedSuccessfully);
            await Task.WhenAll(writers).WaitAsync(s_limit); // every write answered: applied, or failed as shutting down
            Assert.Equal(0, host.PendingProposalBatches);
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var sender in senders)
            {
                Assert.True(sender.Join(s_limit), "a delivering thread hung");
            }

            await host.DisposeAsync();
        }
    }

    private static Message Heartbeat(RaftHost host, Term term) =>
        new() { Type = MessageType.Heartbeat, From = new NodeId(2), To = host.Id, Term = term };

    /// <summary>Delivers on a new thread, as a receive thread does, and returns that thread's managed id once
    /// <see cref="RaftHost.Deliver"/> returned.</summary>
    private static int DeliverOnThread(RaftHost host, Message message, bool moreReceived = false)
    {
        int id = 0;
        var thread = new Thread(() =>
        {
            id = Environment.CurrentManagedThreadId;
            host.Deliver(message, moreReceived);
        });
        thread.Start();
        Assert.True(thread.Join(s_limit), "Deliver did not return");
        return id;
    }

    private static Task TermReached(RaftHost host, Term term)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.LeadershipChanged += change =>
        {
            if (change.Term >= term)
            {
                reached.TrySetResult();
            }
        };
        return reached.Task;
    }

    /// <summary>The loop ends its pass a moment after the answer it gave: nothing else wakes it (the clock is
    /// fake), so a pass that runs after this is the test's own.</summary>
    /// <summary>A single-node host (a leader, handling its peer messages inline) over a log store the test can make
    /// refuse or break, written to once and idle.</summary>
    private static async Task<(RaftHost Host, FakeRaftClock Clock, RefusingLogStore Store)> StartIdleLeaderAsync()
    {
        var store = new RefusingLogStore(SingleNodeHost.Log());
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { InlinePeerPassesOnLeader = true }, log: store);
        try
        {
            await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");
            await WaitUntilIdleAsync(host);
            return (host, clock, store);
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    private static async Task WaitUntilIdleAsync(RaftHost host)
    {
        try
        {
            while (true)
            {
                var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                host.PassEnded = () => ended.TrySetResult();
                if (!host.PassRunning)
                {
                    return;
                }

                await ended.Task.WaitAsync(s_limit);
            }
        }
        finally
        {
            host.PassEnded = null;
        }
    }

    private static async Task Settled(Task<ApplyResult> write)
    {
        try
        {
            await write;
        }
        catch (RaftHostException)
        {
        }
    }

    /// <summary>Refuses saves while <see cref="Full"/>, fails them with a bug while <see cref="Broken"/>; records the
    /// thread of the last save that succeeded.</summary>
    private sealed class RefusingLogStore(IRaftLogStore inner) : IRaftLogStore
    {
        public volatile bool Full;

        public int Refused;

        public int SavedOn;

        public volatile bool Broken;

        public const string BrokenMessage = "a bug in the store (simulated)";

        public PersistentState Load() => inner.Load();

        public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
        {
            if (Broken)
            {
                throw new InvalidOperationException(BrokenMessage);
            }

            if (Full)
            {
                Interlocked.Increment(ref Refused);
                throw new IOException("No space left on device (simulated)");
            }

            bool wrote = inner.Save(hardState, entries);
            Volatile.Write(ref SavedOn, Environment.CurrentManagedThreadId);
            return wrote;
        }

        public void ApplySnapshot(SnapshotMetadata snapshot) => inner.ApplySnapshot(snapshot);

        public void Compact(LogIndex upTo) => inner.Compact(upTo);
    }

    /// <summary>Makes the idle host follow node 2 at a newer term (a heartbeat is handled where it arrives), then
    /// returns node 2's next append with one entry, and a task that gives the thread the append is stepped on.</summary>
    private static async Task<(Message Append, TaskCompletionSource<int> Stepped)> FollowNode2WithAnAppendAsync(RaftHost host)
    {
        var newer = new Term(host.Status.Term.Value + 1);
        var follows = TermReached(host, newer);
        DeliverOnThread(host, Heartbeat(host, newer));
        await follows.WaitAsync(s_limit);
        await WaitUntilIdleAsync(host);

        var stepped = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.PeerMessageStepping = m =>
        {
            if (m.Type == MessageType.Append)
            {
                stepped.TrySetResult(Environment.CurrentManagedThreadId);
            }
        };
        var last = host.Status.LastIndex;
        var append = new Message
        {
            Type = MessageType.Append, From = new NodeId(2), To = host.Id, Term = newer, Index = last, LogTerm = new Term(newer.Value - 1),
            Entries = [new Entry(newer, last.Next, EntryType.Normal, "x"u8.ToArray())],
        };
        return (append, stepped);
    }
}
