namespace Stcache.Integration.Tests;

/// <summary>
/// Owns what a process-level test starts: a temporary directory for the nodes' data and every node, all killed and
/// removed when the test ends.
/// </summary>
public abstract class ProcessTest : IAsyncLifetime
{
    protected TempDirectory WorkDirectory { get; } = new();

    protected List<Node> Nodes { get; } = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public virtual async Task DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }

        WorkDirectory.Dispose();
    }
}
