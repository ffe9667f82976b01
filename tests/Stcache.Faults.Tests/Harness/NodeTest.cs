namespace Stcache.Faults.Tests.Harness;

/// <summary>
/// Owns what a process-level test starts outside a <see cref="StcacheCluster"/>: a temporary root for the nodes'
/// data and every node, all killed and removed when the test ends.
/// </summary>
public abstract class NodeTest(string prefix) : IAsyncLifetime
{
    protected List<NodeProcess> Nodes { get; } = [];

    protected string Root { get; } = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N")[..12]);

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(Root);
        return Task.CompletedTask;
    }

    public virtual Task DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            node.Kill();
        }

        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }

        return Task.CompletedTask;
    }
}
