using System.Net;
using System.Text;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>
/// A node id names one incarnation of a data directory (docs/RAFT.md, "Node ids"): a node that joins under its
/// default name draws a random id when its directory is initialised, so a wiped node restarted with the same flags
/// comes back as a new member; and the id it had is never added again.
/// </summary>
public sealed class NodeIdTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(40);

    [Fact]
    public async Task A_wiped_joiner_restarted_with_the_same_flags_is_a_new_member_and_its_old_id_is_refused()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], s_wait);
        var n2 = StartNode("n2", "--join=" + n1.Http);
        var n3 = StartNode("n3", "--join=" + n1.Http);
        await Api.WaitUntilAsync("three voters", async () =>
            (await Api.StatusAsync(n1))?.GetProperty("voters").GetArrayLength() == 3, s_wait, n1, n2, n3);
        string oldId = (await Api.StatusAsync(n2))!.Value.GetProperty("id").GetString()!;

        // Remove it while down (the two others commit that), wipe its directory, start it again with the very same flags.
        await n2.StopAsync();
        var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Delete, $"http://{n1.Http}/v1/cluster/members/{oldId}");
        Assert.True(status == HttpStatusCode.OK, $"{status}: {body}");
        Directory.Delete(Path.Combine(WorkDirectory.Path, "n2"), recursive: true);
        n2.Start();
        await Api.WaitUntilAsync("the wiped node back as a voter", async () =>
            (await Api.StatusAsync(n1))?.GetProperty("voters").GetArrayLength() == 3, s_wait, n1, n2, n3);
        string newId = (await Api.StatusAsync(n2))!.Value.GetProperty("id").GetString()!;
        Assert.NotEqual(oldId, newId);
        var voters = (await Api.StatusAsync(n1))!.Value.GetProperty("voters").EnumerateArray().Select(v => v.GetString()).ToList();
        Assert.Contains(newId, voters);
        Assert.DoesNotContain(oldId, voters);

        // The old id is refused for good, naming why.
        string request = $"{{\"id\":{oldId},\"name\":\"again\",\"raftAddress\":\"127.0.0.1:{FreePorts.Next()}\",\"httpAddress\":\"127.0.0.1:{FreePorts.Next()}\"}}";
        (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Post, $"http://{n1.Http}/v1/cluster/members", Encoding.UTF8.GetBytes(request));
        Assert.True(status == HttpStatusCode.Conflict, $"{status}: {body}");
        Assert.Contains("never added again", JsonDocument.Parse(body).RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    private Node StartNode(string name, params string[] extra)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + Path.Combine(WorkDirectory.Path, name), .. extra]);
        Nodes.Add(node);
        node.Start();
        return node;
    }
}
