using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// Right after an election a follower knows its new leader's id before the entry with the leader's HTTP address has
/// been applied on it (AddressAnnouncement). A write sent to the follower then must wait, within its own deadline,
/// for the address and be forwarded; it used to fail at once with 503 "has not published its HTTP address yet"
/// (seen on a fresh-clone CI run of SecurityTests). Here the address is published by the test, when it chooses: three
/// in-process hosts whose members start with no HTTP address, so no leader announces one by itself.
/// </summary>
public sealed class LeaderAddressWaitTests
{
    private const string LeaderHttp = "leader.invalid:7001";

    [Fact(Timeout = 60_000)]
    public async Task A_follower_waits_for_the_leaders_address_then_forwards_the_write()
    {
        await using var cluster = LocalCluster.Start(TimeSpan.FromSeconds(30));
        var (leader, follower) = await cluster.LeaderAndFollowerAsync();
        var leaderService = new CommandService(leader, new ServerOptions(), new NoClients(), NullLogger.Instance);
        var forwarded = new List<Uri>();
        var service = new CommandService(follower, new ServerOptions(), new LeaderClients(leaderService, forwarded), NullLogger.Instance);

        var write = service.WriteAsync(WriteRequest.Of(CacheCommand.Set("k", "v"u8.ToArray())), CancellationToken.None);
        Assert.False(write.IsCompleted, $"the write did not wait for the leader's address: {Describe(write)}");

        // The leader's address reaches the follower the way it does in a cluster: a committed member-address entry.
        var published = leader.Members.Find(leader.Id)! with { HttpAddress = LeaderHttp };
        await leader.ProposeAsync(HostCommand.EncodeMemberAddress(published));

        var outcome = await write.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(outcome.Status == WriteStatus.Applied, $"{outcome.Status} {outcome.Failure}: {outcome.Detail}");
        Assert.Equal(leader.Id, outcome.Leader);
        lock (forwarded)
        {
            Assert.Equal([new Uri($"http://{LeaderHttp}{CommandService.ProposePath}")], forwarded);
        }

        Assert.True(leader.Cache.TryGet("k", out var stored, leader.Cache.LastLogTimeUnixMs), "the forwarded write is not on the leader");
        Assert.Equal("v"u8.ToArray(), stored.Value);
    }

    [Fact(Timeout = 60_000)]
    public async Task Without_the_leaders_address_a_write_answers_not_published_at_its_deadline_not_before()
    {
        var timeout = TimeSpan.FromSeconds(1);
        await using var cluster = LocalCluster.Start(timeout);
        var (_, follower) = await cluster.LeaderAndFollowerAsync();
        var service = new CommandService(follower, new ServerOptions(), new NoClients(), NullLogger.Instance);

        var elapsed = Stopwatch.StartNew();
        var outcome = await service.WriteAsync(WriteRequest.Of(CacheCommand.Set("k", "v"u8.ToArray())), CancellationToken.None);
        elapsed.Stop();

        Assert.Equal(WriteStatus.NotApplied, outcome.Status);
        Assert.Equal(FailureKind.LeaderUnreachable, outcome.Failure);
        Assert.Contains("has not published its HTTP address yet", outcome.Detail, StringComparison.Ordinal);

        // The deadline timer may fire a little early on a coarse clock; never a whole tick of the request timeout.
        Assert.True(elapsed.Elapsed >= timeout - TimeSpan.FromMilliseconds(50), $"answered after {elapsed.Elapsed.TotalMilliseconds:F0} ms, before the {timeout.TotalMilliseconds:F0} ms deadline");
    }

    [Fact(Timeout = 60_000)]
    public async Task A_write_waiting_for_the_leaders_address_goes_to_the_next_leader_when_leadership_moves()
    {
        await using var cluster = LocalCluster.Start(TimeSpan.FromSeconds(30));
        var (leader, follower) = await cluster.LeaderAndFollowerAsync();
        var service = new CommandService(follower, new ServerOptions(), new NoClients(), NullLogger.Instance);

        var write = service.WriteAsync(WriteRequest.Of(CacheCommand.Set("k", "v"u8.ToArray())), CancellationToken.None);
        Assert.False(write.IsCompleted, $"the write did not wait for the leader's address: {Describe(write)}");

        // The waiting follower itself becomes the leader: woken by the leadership change, it proposes the write.
        await leader.TransferLeadershipAsync(follower.Id);
        var outcome = await write.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(outcome.Status == WriteStatus.Applied, $"{outcome.Status} {outcome.Failure}: {outcome.Detail}");
        Assert.True(follower.Cache.TryGet("k", out var stored, follower.Cache.LastLogTimeUnixMs), "the write is not on the new leader");
        Assert.Equal("v"u8.ToArray(), stored.Value);
    }

    private static string Describe(Task<WriteOutcome> write) =>
        write.IsCompletedSuccessfully ? $"{write.Result.Status} {write.Result.Failure}: {write.Result.Detail}" : write.Status.ToString();

    /// <summary>Three real hosts on real time, messages handed over in process; members with raft addresses only.</summary>
    private sealed class LocalCluster : IAsyncDisposable
    {
        private readonly List<RaftHost> _hosts = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public static LocalCluster Start(TimeSpan requestTimeout)
        {
            var cluster = new LocalCluster();
            var members = Enumerable.Range(1, 3).Select(i => new MemberInfo((ulong)i, "n" + i, "127.0.0.1:" + i, string.Empty)).ToArray();
            var initial = PersistentState.Bootstrap([.. members.Select(m => new ConfChange(ConfChangeType.AddVoter, new NodeId(m.Id), m.ToContext()))]);
            var network = new InProcessPeerNetwork();
            foreach (var member in members)
            {
                var options = new RaftHostOptions
                {
                    // An election timeout of a second or more: no election but the first on a busy machine.
                    Raft = new RaftConfig { Id = new NodeId(member.Id), ElectionTimeoutTicks = 100, HeartbeatIntervalTicks = 10, RandomSeed = member.Id },
                    Self = member,
                    TickInterval = TimeSpan.FromMilliseconds(10),
                    RequestTimeout = requestTimeout,
                };
                var host = new RaftHost(options, new MemoryLogStore(initial), new MemorySnapshotStore(), network, new CacheStateMachine(), new MemberBook(), NullLogger<RaftHost>.Instance);
                host.LeadershipChanged += _ => Interlocked.Exchange(ref cluster._changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                network.Hosts[host.Id] = host;
                cluster._hosts.Add(host);
            }

            foreach (var host in cluster._hosts)
            {
                host.Start();
            }

            return cluster;
        }

        /// <summary>The leader and a follower that knows it as leader, once there are (woken by leadership events).</summary>
        public async Task<(RaftHost Leader, RaftHost Follower)> LeaderAndFollowerAsync()
        {
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (true)
            {
                var changed = Volatile.Read(ref _changed).Task;
                if (_hosts.FirstOrDefault(h => h.Status.IsLeader) is { } leader
                    && _hosts.FirstOrDefault(h => h != leader && h.Status.Leader == leader.Id) is { } follower)
                {
                    Assert.True(string.IsNullOrEmpty(follower.Members.Find(leader.Id)?.HttpAddress), "the follower knew the leader's address from the start");
                    return (leader, follower);
                }

                await changed.WaitAsync(limit.Token);
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var host in _hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    /// <summary>A follower that must not forward anything: the leader's address is never published.</summary>
    private sealed class NoClients : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => throw new InvalidOperationException("nothing may be forwarded while the leader's address is unknown");
    }

    /// <summary>The leader's side of forwarding, in process: the batch goes to the leader's own service.</summary>
    private sealed class LeaderClients(CommandService leader, List<Uri> forwarded) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new(new Handler(leader, forwarded));

        private sealed class Handler(CommandService leader, List<Uri> forwarded) : HttpMessageHandler
        {
            protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
            {
                lock (forwarded)
                {
                    forwarded.Add(request.RequestUri!);
                }

                byte[] body = await request.Content!.ReadAsByteArrayAsync(cancellationToken);
                var commands = WriteRequest.DecodeAll(body, out string? problem) ?? throw new InvalidOperationException("bad forwarded batch: " + problem);
                var outcomes = await leader.ProposeLocallyAsync(commands, cancellationToken);
                byte[] answer = JsonSerializer.SerializeToUtf8Bytes(outcomes.Select(ForwardedResult.From).ToArray(), CommandJson.Default.ForwardedResultArray);
                return new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent(answer) };
            }
        }
    }
}
