using System.Net;
using Stcache.Integration.Tests;
using Stcache.Testing;

namespace Stcache.Operations.Tests;

/// <summary>
/// Lost-quorum recovery with the real binaries: two of three nodes die for good, <c>stcachectl recover</c> turns
/// the survivor into a one-member cluster, two fresh nodes join it, and every write the survivor had applied is
/// still there. While a majority still answers, the command refuses and changes nothing.
/// </summary>
public sealed class RecoveryTests : ClusterTest
{
    private const int Keys = 200;

    [Fact]
    public async Task A_survivor_recovers_keeps_every_applied_write_and_fresh_nodes_join_it()
    {
        var nodes = await StartThreeAsync();
        var leader = await Api.WaitForLeaderAsync(nodes, Wait);
        for (int i = 0; i < Keys; i++)
        {
            var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{leader.Http}/v1/kv/key{i}", System.Text.Encoding.UTF8.GetBytes("value" + i));
            Assert.True(status == HttpStatusCode.OK, $"write {i}: {(int)status} {body}");
        }

        // The survivor is a follower that has applied everything the leader committed.
        var survivor = nodes.First(n => n != leader);
        var leaderStatus = (await Api.StatusAsync(leader))!.Value;
        ulong committed = leaderStatus.GetProperty("commit").GetUInt64();
        await Api.WaitUntilAsync("the survivor applied every write", async () =>
            (await Api.StatusAsync(survivor))?.GetProperty("applied").GetUInt64() >= committed, Wait, nodes);
        string survivorId = (await Api.StatusAsync(survivor))!.Value.GetProperty("id").GetString()!;

        // With the other two alive, recovery refuses: they still form a majority.
        await survivor.StopAsync();
        string data = DataDirectoryOf(survivor.Name);
        var refused = await RunCtlAsync("recover", "--data-dir", data, "--probe-timeout", "2");
        Assert.True(refused.Code == 1, refused.ToString());
        Assert.Contains("refusing", refused.Stdout, StringComparison.Ordinal);

        // Refused means untouched: the survivor restarts into the old cluster as a follower.
        survivor.Start();
        await Api.WaitUntilAsync("the survivor rejoins the old cluster", async () =>
            (await Api.StatusAsync(survivor))?.GetProperty("voters").GetArrayLength() == 3
            && (await Api.StatusAsync(survivor))?.GetProperty("leader").GetString() != "0", Wait, nodes);
        await survivor.StopAsync();

        // Two of three die for good.
        foreach (var node in nodes.Where(n => n != survivor))
        {
            await node.KillAsync();
        }

        var recovered = await RunCtlAsync("recover", "--data-dir", data, "--probe-timeout", "1");
        Assert.True(recovered.Code == 0, recovered.ToString());
        Assert.Contains("recovered", recovered.Stdout, StringComparison.Ordinal);

        survivor.Start();
        await Api.WaitUntilAsync("the survivor leads a one-member cluster", async () =>
        {
            var status = await Api.StatusAsync(survivor);
            return status?.GetProperty("role").GetString() == "leader" && status.Value.GetProperty("voters").GetArrayLength() == 1;
        }, Wait, survivor);
        Assert.Equal(survivorId, (await Api.StatusAsync(survivor))!.Value.GetProperty("id").GetString());
        for (int i = 0; i < Keys; i++)
        {
            Assert.Equal("value" + i, await Api.GetStringAsync($"http://{survivor.Http}/v1/kv/key{i}"));
        }

        // Fresh nodes join; the cluster is three voters again and takes writes.
        var fresh = new[] { StartNode("f1", "--join=" + survivor.Http), StartNode("f2", "--join=" + survivor.Http) };
        await Api.WaitUntilAsync("three voters again", async () =>
            (await Api.StatusAsync(survivor))?.GetProperty("voters").GetArrayLength() == 3, Wait, [survivor, .. fresh]);
        var (written, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{fresh[0].Http}/v1/kv/after", "recovery"u8.ToArray());
        Assert.Equal(HttpStatusCode.OK, written);
        foreach (var node in fresh)
        {
            for (int i = 0; i < Keys; i += 17)
            {
                Assert.Equal("value" + i, await Api.GetStringAsync($"http://{node.Http}/v1/kv/key{i}"));
            }
        }

        // Run again while the two new members answer: they are a majority of its configuration now, so it refuses.
        await survivor.StopAsync();
        var again = await RunCtlAsync("recover", "--data-dir", data);
        Assert.True(again.Code == 1 && again.Stdout.Contains("refusing", StringComparison.Ordinal), again.ToString());
    }

    [Fact]
    public async Task Recover_refuses_a_running_node_and_a_directory_that_is_not_one()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], Wait);
        var running = await RunCtlAsync("recover", "--data-dir", DataDirectoryOf("n1"));
        Assert.Equal(1, running.Code);
        Assert.Contains("stop the node", running.Stderr, StringComparison.Ordinal);

        string empty = Path.Combine(WorkDirectory.Path, "empty");
        Directory.CreateDirectory(empty);
        File.WriteAllText(Path.Combine(empty, "unrelated.txt"), "x");
        var notOne = await RunCtlAsync("recover", "--data-dir", empty);
        Assert.Equal(1, notOne.Code);
        Assert.Empty(notOne.Stdout);
    }

    private static Task<ChildProcessResult> RunCtlAsync(params string[] args) =>
        ChildProcess.RunDotnetAsync("stcachectl.dll", TimeSpan.FromSeconds(120), args);
}
