namespace Stcache.Integration.Tests;

/// <summary><c>--warmup off</c> starts a node without the warm-up's scratch cluster; by default it runs. Told apart
/// by the one line each start logs about it.</summary>
public sealed class WarmupOptionTests : ProcessTest
{
    private const string RanLine = "Warm-up: the failover paths ran";
    private const string OffLine = "Warm-up off (--warmup off)";
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Off_starts_without_the_warmup_and_the_default_runs_it()
    {
        var off = Single("off", "--warmup=off");
        var on = Single("on");
        await Api.WaitForLeaderAsync([off], s_wait);
        await Api.WaitForLeaderAsync([on], s_wait);

        // Each start logs one of the two lines before it serves; the pipe may hand it over a moment after.
        await Api.WaitUntilAsync("the node started with --warmup off to log so", () => Task.FromResult(off.Output.Contains(OffLine, StringComparison.Ordinal)), s_wait, off);
        Assert.DoesNotContain(RanLine, off.Output, StringComparison.Ordinal);
        await Api.WaitUntilAsync("the node started by default to log its warm-up", () => Task.FromResult(on.Output.Contains(RanLine, StringComparison.Ordinal)), s_wait, on);
        Assert.DoesNotContain(OffLine, on.Output, StringComparison.Ordinal);
    }

    private Node Single(string name, params string[] extra)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--node=" + Path.Combine(WorkDirectory.Path, name), "--bootstrap=true", .. extra]);
        Nodes.Add(node);
        node.Start();
        return node;
    }
}
