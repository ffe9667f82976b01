using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>The three seeds' command lines parse verbatim; bad ones are usage errors (exit code 2).</summary>
public sealed class CommandLineTests
{
    [Fact]
    public void StcacheSeedFlags()
    {
        var options = CommandLine.Parse(["--http=127.0.0.1:6000", "--raft=127.0.0.1:7000", "--node=./node0", "-bootstrap=true"]);
        Assert.Equal("127.0.0.1:6000", options.HttpAddress);
        Assert.Equal("127.0.0.1:7000", options.RaftAddress);
        Assert.Equal("./node0", options.DataDirectory);
        Assert.True(options.Bootstrap);

        options = CommandLine.Parse(["--http=127.0.0.1:6001", "--raft=127.0.0.1:7001", "--node=./node1", "--join=127.0.0.1:6000"]);
        Assert.Equal("127.0.0.1:6000", options.Join);
        Assert.Equal(FlagDialect.Stcache, options.Dialect);
        Assert.True(CommandLine.Parse(["-bootstrap", "--http", "127.0.0.1:1", "--raft", "127.0.0.1:2"]).Bootstrap);
    }

    [Fact]
    public void RaftDemoSeedFlags()
    {
        var options = CommandLine.Parse(["--http_addr=127.0.0.1:7001", "--raft_addr=127.0.0.1:7000", "--raft_id=1",
            "--raft_cluster=1/127.0.0.1:7000,2/127.0.0.1:8000,3/127.0.0.1:9000"]);
        Assert.Equal(FlagDialect.RaftDemo, options.Dialect);
        Assert.Equal(1UL, options.RaftId);
        Assert.Equal([(1UL, "127.0.0.1:7000"), (2UL, "127.0.0.1:8000"), (3UL, "127.0.0.1:9000")], options.StaticCluster);
    }

    [Fact]
    public void Shaj13SeedFlags()
    {
        var options = CommandLine.Parse(["-state_dir", "/tmp/2", "-raft", ":8081", "-api", ":9091", "-join", ":8080"]);
        Assert.Equal(FlagDialect.Shaj13, options.Dialect);
        Assert.Equal(":8081", options.RaftAddress);
        Assert.Equal(":8080", options.Join);
        Assert.True(CommandLine.IsAnyHost(options.HttpAddress));
        Assert.Equal("127.0.0.1:8080", CommandLine.NormalizeAddress(options.Join!));
        Assert.Equal("/tmp/1", CommandLine.Parse(["-state_dir=/tmp/1", "-raft", ":8080", "-api", ":9090"]).DataDirectory);
    }

    [Theory]
    [InlineData("--unknown=1")]
    [InlineData("--http")]
    [InlineData("positional")]
    [InlineData("--bootstrap=maybe")]
    [InlineData("--bootstrap", "--join=127.0.0.1:6000")]
    [InlineData("--http=127.0.0.1:1", "--http=127.0.0.1:2")]
    [InlineData("--http=127.0.0.1:7000", "--raft=127.0.0.1:7000")]
    [InlineData("--raft_id=1")]
    [InlineData("--raft_id=4", "--raft_cluster=1/127.0.0.1:7000")]
    [InlineData("--raft_id=1", "--raft_addr=127.0.0.1:7000", "--raft_cluster=1/127.0.0.1:7000,1/127.0.0.1:8000")]
    [InlineData("--raft_id=1", "--raft_addr=127.0.0.1:9999", "--raft_cluster=1/127.0.0.1:7000")]
    [InlineData("--http=nonsense")]
    [InlineData("--tick-ms=0")]
    [InlineData("--election-ticks=1")]
    [InlineData("--warmup=maybe")]
    [InlineData("--warmup")]
    public void BadCommandLinesAreUsageErrors(params string[] args)
    {
        Assert.Throws<UsageException>(() => CommandLine.Parse(args));
    }

    [Fact]
    public void HelpListsOwnOptions()
    {
        Assert.True(CommandLine.Parse(["--help"]).Help);
        string usage = CommandLine.Usage();
        Assert.Contains("--forward-writes", usage, StringComparison.Ordinal);
        Assert.Contains("--request-timeout-ms", usage, StringComparison.Ordinal);
        Assert.Contains("--warmup <value>", usage, StringComparison.Ordinal);
    }

    [Fact]
    public void WarmupIsOnUnlessTurnedOff()
    {
        string[] addresses = ["--http=127.0.0.1:1", "--raft=127.0.0.1:2"];
        Assert.True(CommandLine.Parse(addresses).Warmup);
        Assert.True(CommandLine.Parse([.. addresses, "--warmup=on"]).Warmup);
        Assert.False(CommandLine.Parse([.. addresses, "--warmup", "off"]).Warmup);
        Assert.False(CommandLine.Parse([.. addresses, "--warmup=OFF"]).Warmup);
        var bad = Assert.Throws<UsageException>(() => CommandLine.Parse([.. addresses, "--warmup=maybe"]));
        Assert.Contains("--warmup", bad.Message, StringComparison.Ordinal);
        Assert.Contains("one of on, off", bad.Message, StringComparison.Ordinal);
    }
}
