using System.Collections;
using Stcache.Cache;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>--max-memory and --eviction-policy: Redis's units and policy names in every flag syntax, the
/// configuration file and STCACHE_* variables; a bad value is one clear line naming where it came from.</summary>
public sealed class MemoryFlagTests
{
    [Theory]
    [InlineData("0", 0L)]
    [InlineData("1048576", 1048576L)]
    [InlineData("100mb", 100L << 20)]
    [InlineData("100MB", 100L << 20)]
    [InlineData("2gb", 2L << 30)]
    [InlineData("64kb", 64L << 10)]
    [InlineData("1k", 1000L)]
    [InlineData("3m", 3_000_000L)]
    [InlineData("1g", 1_000_000_000L)]
    [InlineData("512b", 512L)]
    public void MaxMemoryTakesRedisUnits(string text, long bytes)
    {
        Assert.Equal(bytes, CommandLine.Parse(["--max-memory=" + text]).MaxMemoryBytes);
        Assert.Equal(bytes, CommandLine.Parse(["-max-memory", text]).MaxMemoryBytes);
        Assert.Equal(bytes, CommandLine.Parse(["--maxmemory", text]).MaxMemoryBytes);
    }

    [Fact]
    public void EvictionPolicyTakesRedisNames_InEveryDialect()
    {
        foreach (var policy in Enum.GetValues<EvictionPolicy>())
        {
            Assert.Equal(policy, CommandLine.Parse(["--eviction-policy=" + policy.Name()]).EvictionPolicy);
            Assert.Equal(policy, CommandLine.Parse(["-eviction-policy", policy.Name().ToUpperInvariant()]).EvictionPolicy);
            Assert.Equal(policy, CommandLine.Parse(["--maxmemory-policy", policy.Name()]).EvictionPolicy);
        }

        // The seeds' dialects take them too.
        var raftDemo = CommandLine.Parse(["--http_addr=127.0.0.1:7001", "--raft_addr=127.0.0.1:7000", "--raft_id=1",
            "--raft_cluster=1/127.0.0.1:7000", "--max-memory=1gb", "--eviction-policy=allkeys-lfu"]);
        Assert.Equal((1L << 30, EvictionPolicy.AllKeysLfu), (raftDemo.MaxMemoryBytes!.Value, raftDemo.EvictionPolicy!.Value));
        var shaj13 = CommandLine.Parse(["-state_dir", "/tmp/2", "-raft", ":8081", "-api", ":9091", "-max-memory", "10mb", "-eviction-policy", "volatile-ttl"]);
        Assert.Equal((10L << 20, EvictionPolicy.VolatileTtl), (shaj13.MaxMemoryBytes!.Value, shaj13.EvictionPolicy!.Value));

        var none = CommandLine.Parse([]);
        Assert.Null(none.MaxMemoryBytes);
        Assert.Null(none.EvictionPolicy);
    }

    [Fact]
    public void FromTheConfigurationFileAndTheEnvironment_FlagsWin()
    {
        string file = Path.Combine(Path.GetTempPath(), $"stcache-memory-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, """{ "max-memory": "100mb", "eviction-policy": "allkeys-lru" }""");
        try
        {
            var options = ConfigurationSources.Parse(["--config", file], new Hashtable());
            Assert.Equal((100L << 20, EvictionPolicy.AllKeysLru), (options.MaxMemoryBytes!.Value, options.EvictionPolicy!.Value));

            options = ConfigurationSources.Parse(["--config", file], new Hashtable { ["STCACHE_MAX_MEMORY"] = "2gb", ["STCACHE_EVICTION_POLICY"] = "volatile-lru" });
            Assert.Equal((2L << 30, EvictionPolicy.VolatileLru), (options.MaxMemoryBytes!.Value, options.EvictionPolicy!.Value));

            options = ConfigurationSources.Parse(["--config", file, "--max-memory=0", "--eviction-policy=noeviction"], new Hashtable { ["STCACHE_MAX_MEMORY"] = "2gb" });
            Assert.Equal((0L, EvictionPolicy.NoEviction), (options.MaxMemoryBytes!.Value, options.EvictionPolicy!.Value));

            File.WriteAllText(file, """{ "max-memory": 1048576 }""");
            Assert.Equal(1048576L, ConfigurationSources.Parse(["--config", file], new Hashtable()).MaxMemoryBytes);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("--max-memory=lots", "--max-memory: 'lots' is not a size")]
    [InlineData("--max-memory=-1", "--max-memory: '-1' is not a size")]
    [InlineData("--max-memory=10tb", "--max-memory: '10tb' is not a size")]
    [InlineData("--max-memory=99999999999gb", "is not a size")]
    [InlineData("--max-memory=", "is not a size")]
    [InlineData("--eviction-policy=lru", "--eviction-policy: 'lru' is not a policy (noeviction, allkeys-lru,")]
    public void BadValuesAreOneClearLine(string flag, string message)
    {
        var error = Assert.Throws<UsageException>(() => CommandLine.Parse([flag]));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void BadValuesFromTheEnvironmentNameTheVariable()
    {
        var error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse([], new Hashtable { ["STCACHE_EVICTION_POLICY"] = "sometimes" }));
        Assert.StartsWith("STCACHE_EVICTION_POLICY: --eviction-policy: 'sometimes' is not a policy", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse([], new Hashtable { ["STCACHE_MAX_MEMORY"] = "1 GB" }));
        Assert.StartsWith("STCACHE_MAX_MEMORY: --max-memory: '1 GB' is not a size", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HelpListsThemUnderLimits()
    {
        string usage = CommandLine.Usage();
        Assert.Contains("--max-memory, --maxmemory <value>", usage, StringComparison.Ordinal);
        Assert.Contains("--eviction-policy, --maxmemory-policy <value>", usage, StringComparison.Ordinal);
    }
}
