using Stcache.Integration.Tests;

namespace Stcache.Operations.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>Starts real stcached processes for a test: a bootstrapped first node and others that join it.</summary>
public abstract class ClusterTest : ProcessTest
{
    protected static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    protected Node StartNode(string name, params string[] extra)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + DataDirectoryOf(name), .. extra]);
        Nodes.Add(node);
        node.Start();
        return node;
    }

    protected string DataDirectoryOf(string name) => Path.Combine(WorkDirectory.Path, name);

    /// <summary>Three voters: n1 bootstraps, n2 and n3 join it; returns once all three are voters.</summary>
    protected async Task<Node[]> StartThreeAsync(params string[] extra)
    {
        var n1 = StartNode("n1", ["--bootstrap", .. extra]);
        await Api.WaitForLeaderAsync([n1], Wait);
        var n2 = StartNode("n2", ["--join=" + n1.Http, .. extra]);
        var n3 = StartNode("n3", ["--join=" + n1.Http, .. extra]);
        Node[] nodes = [n1, n2, n3];
        await Api.WaitUntilAsync("three voters", async () =>
            (await Api.StatusAsync(n1))?.GetProperty("voters").GetArrayLength() == 3, Wait, nodes);
        await Api.WaitForLeaderAsync(nodes, Wait);
        return nodes;
    }
}
