using System.Collections;
using System.Net;
using System.Text;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// <c>--io-threads</c>: the node sets the runtime's socket switch itself, first thing in Main, and it takes effect.
/// The evidence is the node's own probe at startup (a pending receive completed by a byte from a second socket, and
/// the thread its continuation resumed on), not the variable's value; the node then serves a write and a read.
/// </summary>
public sealed class IoThreadsTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("inline", "inline", null, "inline")]
    [InlineData("pool", "pool", null, "pool")]
    [InlineData(null, "inline", null, "inline")]
    [InlineData("inline", "inline", "pool", "pool")]
    [InlineData("inline", "inline", "inline", "inline")]
    [InlineData("pool", "pool", "inline", "pool")]
    public async Task The_mode_asked_for_is_the_mode_observed(string? mode, string observed, string? http, string httpRuns)
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
        [
            $"--http={n.Http}", $"--raft={n.Raft}", "--bootstrap=true", "--node=" + Path.Combine(WorkDirectory.Path, "n1"),
            .. mode is null ? Array.Empty<string>() : [$"--io-threads={mode}"],
            .. http is null ? Array.Empty<string>() : [$"--http-scheduling={http}"],
        ]);
        Nodes.Add(node);
        node.Start();

        string line = $"io-threads {observed}: socket completions observed running {observed}; HTTP requests run {httpRuns}";
        await Api.WaitUntilAsync(line, () => Task.FromResult(node.Output.Contains(line, StringComparison.Ordinal)), s_wait, node);
        await Api.WaitForLeaderAsync([node], s_wait);

        var (status, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/io", Encoding.UTF8.GetBytes("threads"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("threads", await Api.GetStringAsync($"http://{node.Http}/v1/kv/io?consistency=linearizable"));
    }

    [Fact]
    public void The_mode_is_a_setting_like_any_other()
    {
        Assert.True(ConfigurationSources.Parse(["--http=127.0.0.1:6400"], new Hashtable()).InlineIo);
        Assert.False(ConfigurationSources.Parse(["--http=127.0.0.1:6400", "--io-threads", "POOL"], new Hashtable()).InlineIo);
        Assert.False(ConfigurationSources.Parse(["--http=127.0.0.1:6400"], new Hashtable { ["STCACHE_IO_THREADS"] = "pool" }).InlineIo);
        Assert.True(ConfigurationSources.Parse(["--http=127.0.0.1:6400", "--io-threads=inline"], new Hashtable { ["STCACHE_IO_THREADS"] = "pool" }).InlineIo);
        Assert.Contains("--io-threads <value>", CommandLine.Usage(), StringComparison.Ordinal);
    }

    [Fact]
    public void The_http_scheduling_is_a_setting_of_its_own()
    {
        var defaults = ConfigurationSources.Parse(["--http=127.0.0.1:6400"], new Hashtable());
        Assert.True(defaults.InlineHttp);
        var pool = ConfigurationSources.Parse(["--http=127.0.0.1:6400", "--http-scheduling", "POOL"], new Hashtable());
        Assert.False(pool.InlineHttp);
        Assert.True(pool.InlineIo);
        Assert.False(ConfigurationSources.Parse(["--http=127.0.0.1:6400"], new Hashtable { ["STCACHE_HTTP_SCHEDULING"] = "pool" }).InlineHttp);
        Assert.True(ConfigurationSources.Parse(["--http=127.0.0.1:6400", "--http-scheduling=inline"], new Hashtable { ["STCACHE_HTTP_SCHEDULING"] = "pool" }).InlineHttp);
        Assert.Contains("--http-scheduling <value>", CommandLine.Usage(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_http_scheduling_is_refused_with_one_line()
    {
        var node = new Node("bad", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            [$"--http={n.Http}", $"--raft={n.Raft}", "--bootstrap=true", "--http-scheduling=fast"]);
        Nodes.Add(node);
        node.Start();
        await node.WaitForExitAsync(s_wait);
        Assert.Equal(2, node.ExitCode);
        Assert.Contains("--http-scheduling: unknown value 'fast' (one of inline, pool)", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_mode_is_refused_with_one_line()
    {
        var node = new Node("bad", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            [$"--http={n.Http}", $"--raft={n.Raft}", "--bootstrap=true", "--io-threads=fast"]);
        Nodes.Add(node);
        node.Start();
        await node.WaitForExitAsync(s_wait);
        Assert.Equal(2, node.ExitCode);
        Assert.Contains("--io-threads: unknown value 'fast' (one of inline, pool)", node.Output, StringComparison.Ordinal);
    }
}
