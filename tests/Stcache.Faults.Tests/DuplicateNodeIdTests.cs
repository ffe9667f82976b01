using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// Two processes claiming one node id: a running 3-node cluster, then a fourth process (own ports, own empty data
/// directory) that says it is one of the members. The cluster must keep acknowledging writes through every member
/// and lose none; the impostor must be refused or harmless, and something must say so.
/// </summary>
/// <remarks>
/// The rule that makes this hold: a member's raft address comes only from the replicated member book (its conf
/// change, or its own announcement once it leads). Messages to an id go to that address, so an impostor that only
/// dials the members can send but never receives (PreVote, check-quorum and the up-to-date check then make its
/// campaigns harmless), and a join that names an existing id at another address is refused with 409 instead of
/// re-pointing the link (docs/FAULTS.md, two nodes claiming one id).
/// </remarks>
[Collection(ProcessCollection.Name)]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "xunit calls DisposeAsync, which disposes the client")]
public sealed class DuplicateNodeIdTests(ITestOutputHelper output) : NodeTest("stcache-dupid-")
{
    private static readonly TimeSpan s_window = TimeSpan.FromSeconds(45);
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
    {
        Timeout = TimeSpan.FromSeconds(10),
    };

    public override Task DisposeAsync()
    {
        _http.Dispose();
        return base.DisposeAsync();
    }

    /// <summary>
    /// A static cluster (--raft_id/--raft_cluster); the impostor runs with --raft_id=2 and lists itself as 2. It dials
    /// members 1 and 3 and campaigns, but nobody dials it back: it never learns of a leader, never leads, and a write
    /// sent to it is refused (503). The member it reaches while the real node 2's connection is open logs the
    /// second connection as two processes that may run as node 2.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task A_second_process_with_a_static_members_id_is_harmless_and_named_in_the_log()
    {
        await using var cluster = await StcacheCluster.StartAsync(
            new ClusterOptions { Voters = 3, Spares = 0, ElectionTicks = 20, RequestTimeoutMilliseconds = 5000 }, output.WriteLine, TimeSpan.FromSeconds(60));
        var members = cluster.Founders.ToList();
        await cluster.WaitForConvergenceAsync(members, TimeSpan.FromSeconds(30));
        await WarmUpAsync(members);
        var victim = members[1];
        var impostor = Track(new NodeProcess("impostor-2", victim.Id, FreePorts.Next(), FreePorts.Next(), Path.Combine(Root, "impostor"), null!));
        string staticCluster = string.Join(',', members.Select(m => $"{m.Id}/{(m == victim ? impostor.RaftAddress : m.RaftAddress)}"));
        impostor.SetArguments(() =>
        [
            "--http=" + impostor.HttpAddress,
            "--raft=" + impostor.RaftAddress,
            "--node=" + impostor.DataDirectory,
            "--raft_id=" + victim.Id.ToString(CultureInfo.InvariantCulture),
            "--raft_cluster=" + staticCluster,
            "--tick-ms=50",
            "--election-ticks=20",
            "--request-timeout-ms=2000",
        ]);

        var writer = new Writer(_http, members);
        using var stop = new CancellationTokenSource();
        var writing = writer.RunAsync(stop.Token);
        impostor.Start();

        // Evidence the impostor is doing its worst: it campaigns (a pre-candidate asks again every election timeout)
        // and dialled both other members, and a member noticed two connections claiming node 2.
        string id = victim.Id.ToString(CultureInfo.InvariantCulture);
        await WaitForAsync("the impostor to campaign and dial members 1 and 3", () =>
            impostor.Output().Contains("started an election", StringComparison.Ordinal)
            && impostor.Output().Contains($"Connected to peer {members[0].Id} ", StringComparison.Ordinal)
            && impostor.Output().Contains($"Connected to peer {members[2].Id} ", StringComparison.Ordinal), impostor);
        await WaitForAsync("a member to log two connections claiming node " + id, () =>
            members.Any(m => m.Output().Contains($"two processes running as node {id}", StringComparison.Ordinal)), impostor);

        // Then the cluster works on beside it: 40 more acknowledged writes span several of its election timeouts.
        int before = writer.Acknowledged.Count;
        await WaitForAsync("40 more acknowledged writes", () => writer.Acknowledged.Count >= before + 40 || !writer.Failures.IsEmpty, impostor);

        using (var refused = await _http.PutAsync(new Uri(impostor.BaseUri, "/v1/kv/via-impostor"), new StringContent("x")))
        {
            output.WriteLine($"write via the impostor: {(int)refused.StatusCode} {await refused.Content.ReadAsStringAsync()}");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        }

        using (var ready = await _http.GetAsync(new Uri(impostor.BaseUri, "/readyz")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }

        await stop.CancelAsync();
        await writing;
        Assert.True(impostor.IsRunning, "the impostor crashed:\n" + impostor.Tail(30));
        Assert.DoesNotContain("became leader", impostor.Output(), StringComparison.Ordinal);
        Assert.DoesNotContain("Accepted peer", impostor.Output(), StringComparison.Ordinal); // nobody dials it
        impostor.Kill();

        await AssertNothingLostAsync(cluster, members, writer, absentKey: "via-impostor");
    }

    /// <summary>
    /// A cluster of the shaj13 kind (ids from raft addresses, joins over the raft port); the impostor joins with
    /// --name set to member 2's name, so it has member 2's id at another address. Before the fix the member serving
    /// the join answered "added" (the id was a member already) and pointed its link for that id at the impostor: the
    /// leader's appends went to an empty log and the real member 2 lost its leader. Now the join is refused with
    /// 409 and logged; the link, the member list and every write stay as they were. A plain HTTP join claiming the
    /// id is refused the same way.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task A_join_claiming_a_members_id_from_another_address_is_refused()
    {
        var first = Shaj13Node("s1", join: null);
        first.Start();
        var second = Shaj13Node("s2", join: first);
        var third = Shaj13Node("s3", join: first);
        second.Start();
        third.Start();
        var members = new List<NodeProcess> { first, second, third };
        await WaitConvergedAsync(members);
        await WarmUpAsync(members);

        var impostor = Shaj13Node("impostor-s2", join: first, name: second.RaftAddress);
        Assert.Equal(second.Id, impostor.Id);
        var writer = new Writer(_http, members);
        using var stop = new CancellationTokenSource();
        var writing = writer.RunAsync(stop.Token);
        impostor.Start();

        // The impostor asks again every second. Either its join is refused (twice, to see the retry refused too), or a
        // member dials it as node 2: the hijack this test guards against.
        string id = second.Id.ToString(CultureInfo.InvariantCulture);
        string refusal = $"Join refused: node {id} is a member at raft address {second.RaftAddress}, but a process at {impostor.RaftAddress} claims its id";
        await WaitForAsync("the join claiming node " + id + " to be refused twice", () =>
            (Count(first.Output(), refusal) >= 2 && first.Output().Contains("adding it failed: 409", StringComparison.Ordinal))
            || impostor.Output().Contains("Accepted peer", StringComparison.Ordinal), impostor);
        Assert.False(impostor.Output().Contains("Accepted peer", StringComparison.Ordinal),
            $"a member now sends node {id}'s messages to the impostor:\n{NodeProcess.Describe([.. members, impostor], 20)}");

        // The same claim through the HTTP join endpoint of a member that is not the leader.
        var request = new { id = second.Id, name = "impostor", raftAddress = impostor.RaftAddress, httpAddress = impostor.HttpAddress };
        using (var join = await _http.PostAsJsonAsync(new Uri(third.BaseUri, "/v1/cluster/members"), request))
        {
            string answer = await join.Content.ReadAsStringAsync();
            output.WriteLine($"HTTP join claiming {id}: {(int)join.StatusCode} {answer}");
            Assert.Equal(HttpStatusCode.Conflict, join.StatusCode);
            Assert.Contains("already a member", answer, StringComparison.Ordinal);
        }

        await stop.CancelAsync();
        await writing;
        Assert.True(impostor.IsRunning, "the impostor crashed:\n" + impostor.Tail(30));
        foreach (var member in members)
        {
            string book = await _http.GetStringAsync(new Uri(member.BaseUri, "/mgmt/nodes"));
            Assert.Contains($"\"raftAddress\":\"{second.RaftAddress}\"", book, StringComparison.Ordinal);
            Assert.DoesNotContain(impostor.RaftAddress, book, StringComparison.Ordinal);
        }

        impostor.Kill();
        await AssertNothingLostAsync(null, members, writer, absentKey: null);
    }

    private NodeProcess Track(NodeProcess node)
    {
        Nodes.Add(node);
        return node;
    }

    /// <summary>shaj13 flags: the id comes from the member name, which defaults to the raft address.</summary>
    private NodeProcess Shaj13Node(string slot, NodeProcess? join, string? name = null)
    {
        int raftPort = FreePorts.Next();
        string memberName = name ?? FreePorts.Address(raftPort);
        var node = Track(new NodeProcess(slot, StcacheCluster.IdFromName(memberName), FreePorts.Next(), raftPort, Path.Combine(Root, slot), null!));
        node.SetArguments(() =>
        [
            "-state_dir", node.DataDirectory,
            "-raft", node.RaftAddress,
            "-api", node.HttpAddress,
            .. join is null ? Array.Empty<string>() : ["-join", join.RaftAddress],
            .. name is null ? Array.Empty<string>() : ["--name=" + name],
            "--tick-ms=50",
            "--election-ticks=20",
            "--request-timeout-ms=5000",
        ]);
        return node;
    }

    /// <summary>All members run, list each other as voters, and agree on leader, commit and applied index.</summary>
    private static async Task WaitConvergedAsync(IReadOnlyList<NodeProcess> members)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            var statuses = await Task.WhenAll(members.Select(m => StcacheCluster.TryStatusAsync(m)));
            if (statuses.All(s => s is not null)
                && statuses.Select(s => s!.Leader).Distinct().Count() == 1 && statuses[0]!.Leader != "0"
                && statuses.Select(s => s!.Commit).Distinct().Count() == 1
                && statuses.All(s => s!.Applied == s.Commit && s.Voters.Length == members.Count))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline,
                "members did not converge in 60 s:\n" + string.Join('\n', statuses.Select(s => s?.ToString() ?? "no status")) + "\n" + NodeProcess.Describe(members, 15));
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// One write through each member, retried until acknowledged: a cluster that has only just elected its first
    /// leader (on a loaded machine) may time out a write or two, which must not count against the impostor.
    /// </summary>
    private async Task WarmUpAsync(IReadOnlyList<NodeProcess> members)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        foreach (var member in members)
        {
            while (true)
            {
                try
                {
                    using var put = await _http.PutAsync(new Uri(member.BaseUri, "/v1/kv/warm-up"), new StringContent(member.Name));
                    if (put.StatusCode == HttpStatusCode.OK)
                    {
                        break;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                }

                Assert.True(DateTime.UtcNow < deadline, $"no write through {member.Name} acknowledged within 30 s:\n{NodeProcess.Describe(members, 20)}");
                await Task.Delay(100);
            }
        }
    }

    private async Task WaitForAsync(string what, Func<bool> condition, NodeProcess impostor)
    {
        var deadline = DateTime.UtcNow + s_window;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"waited {s_window.TotalSeconds} s for {what}:\n{NodeProcess.Describe([.. Nodes, impostor], 20)}");
            await Task.Delay(100);
        }
    }

    /// <summary>Every write of the writer was acknowledged, and every member holds every acknowledged key.</summary>
    private async Task AssertNothingLostAsync(StcacheCluster? cluster, IReadOnlyList<NodeProcess> members, Writer writer, string? absentKey)
    {
        output.WriteLine($"{writer.Acknowledged.Count} writes acknowledged, {writer.Failures.Count} failed");
        Assert.True(writer.Failures.IsEmpty, "writes failed while the impostor ran:\n" + string.Join('\n', writer.Failures) + "\n" + NodeProcess.Describe(members, 20));
        Assert.True(writer.Acknowledged.Count >= 10, $"only {writer.Acknowledged.Count} writes in the window");
        if (cluster is not null)
        {
            await cluster.WaitForConvergenceAsync(members, TimeSpan.FromSeconds(30));
        }
        else
        {
            await WaitConvergedAsync(members);
        }

        foreach (var member in members)
        {
            foreach (var (key, value) in writer.Acknowledged)
            {
                var (status, body) = await ReadAcknowledgedAsync(member, key);
                Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NotFound,
                    $"{member.Name} never answered a read of {key} (acknowledged) in 10 s of asking again after errors (status 0: no HTTP answer): last {(int)status} {body}\n{NodeProcess.Describe(members, 20)}");
                Assert.True(status == HttpStatusCode.OK, $"{member.Name} lost {key} (acknowledged): {(int)status} {body}\n{NodeProcess.Describe(members, 20)}");
                Assert.Equal(value, body);
            }

            if (absentKey is not null)
            {
                using var absent = await _http.GetAsync(new Uri(member.BaseUri, "/v1/kv/" + absentKey));
                Assert.Equal(HttpStatusCode.NotFound, absent.StatusCode);
            }
        }
    }

    /// <summary>
    /// A linearizable read of an acknowledged key. An error (a 503 while the member knows no leader for a moment, for
    /// example while its link to the real node 2 is re-established after the impostor's connection closed, another
    /// 5xx, a timeout, a refused connection) is unavailability, not loss: it is asked again for up to 10 s. Only an
    /// answer, 404 or another value, can count as lost; after 10 s of errors the last one is returned (status 0 for an
    /// exception, its message as the body).
    /// </summary>
    private async Task<(HttpStatusCode Status, string Body)> ReadAcknowledgedAsync(NodeProcess member, string key)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            (HttpStatusCode Status, string Body) answer;
            try
            {
                using var get = await _http.GetAsync(new Uri(member.BaseUri, "/v1/kv/" + key));
                answer = (get.StatusCode, await get.Content.ReadAsStringAsync());
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                answer = (0, e.GetType().Name + ": " + e.Message);
            }

            if (answer.Status is HttpStatusCode.OK or HttpStatusCode.NotFound || DateTime.UtcNow > deadline)
            {
                return answer;
            }

            output.WriteLine($"read of {key} on {member.Name}: {(int)answer.Status} {answer.Body}; asking again");
            await Task.Delay(50);
        }
    }

    private static int Count(string text, string what)
    {
        int count = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>One write at a time, round-robin through the members, until stopped; records what was acknowledged.</summary>
    private sealed class Writer(HttpClient http, IReadOnlyList<NodeProcess> members)
    {
        public ConcurrentQueue<(string Key, string Value)> Acknowledged { get; } = new();

        public ConcurrentQueue<string> Failures { get; } = new();

        public async Task RunAsync(CancellationToken stop)
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                var member = members[i % members.Count];
                string key = "during-impostor-" + i.ToString(CultureInfo.InvariantCulture);
                string value = "v" + i.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N");
                try
                {
                    // Not cancelled by stop: a write in flight finishes and is judged.
                    using var put = await http.PutAsync(new Uri(member.BaseUri, "/v1/kv/" + key), new StringContent(value, Encoding.UTF8), CancellationToken.None);
                    if (put.StatusCode == HttpStatusCode.OK)
                    {
                        Acknowledged.Enqueue((key, value));
                    }
                    else
                    {
                        Failures.Enqueue($"{key} via {member.Name}: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync(CancellationToken.None)}");
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    Failures.Enqueue($"{key} via {member.Name}: {e.Message}");
                }

                try
                {
                    await Task.Delay(50, stop);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
    }
}
