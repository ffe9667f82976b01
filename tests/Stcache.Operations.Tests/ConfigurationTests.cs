using System.Collections;
using Stcache.Integration.Tests;
using Stcache.Server;
using Stcache.Storage;
using Stcache.Testing;

namespace Stcache.Operations.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>--config JSON, STCACHE_* variables and flags: precedence, one-line errors naming the source, grouped help.</summary>
public sealed class ConfigurationTests : ClusterTest
{
    private string WriteConfig(string json)
    {
        string path = Path.Combine(WorkDirectory.Path, Guid.NewGuid().ToString("N")[..8] + ".json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void Flags_win_over_the_environment_which_wins_over_the_file()
    {
        string file = WriteConfig("""{ "http": "127.0.0.1:6100", "raft": "127.0.0.1:7100", "tick-ms": 20, "election-ticks": 30, "data-dir": "/tmp/from-file", "bootstrap": true }""");
        var environment = new Hashtable { ["STCACHE_TICK_MS"] = "25", ["STCACHE_RAFT"] = "127.0.0.1:7200", ["STCACHE_UNRELATED"] = "ignored" };

        var options = ConfigurationSources.Parse(["--config", file, "--raft=127.0.0.1:7300"], environment);

        Assert.Equal("127.0.0.1:6100", options.HttpAddress);          // file only
        Assert.Equal(TimeSpan.FromMilliseconds(25), options.TickInterval); // environment over file
        Assert.Equal("127.0.0.1:7300", options.RaftAddress);          // flag over environment and file
        Assert.Equal(30, options.ElectionTicks);
        Assert.Equal("/tmp/from-file", options.DataDirectory);        // an alias of --node
        Assert.True(options.Bootstrap);
    }

    [Fact]
    public void Without_a_file_the_environment_alone_configures_the_node()
    {
        var options = ConfigurationSources.Parse([], new Hashtable { ["STCACHE_HTTP"] = "127.0.0.1:6400", ["STCACHE_JOIN"] = "127.0.0.1:6000" });
        Assert.Equal("127.0.0.1:6400", options.HttpAddress);
        Assert.Equal("127.0.0.1:6000", options.Join);
    }

    [Theory]
    [InlineData("""{ "tick-ms": "fast" }""", "", "\"tick-ms\": --tick-ms: 'fast' must be an integer")]
    [InlineData("""{ "tikc-ms": 20 }""", "", "\"tikc-ms\" is not a setting")]
    [InlineData("""{ "http": ["a"] }""", "", "must be a string, number or boolean")]
    [InlineData("""[1, 2]""", "", "expected a JSON object")]
    [InlineData("""{ "http": """, "", "not valid JSON")]
    [InlineData("{}", "STCACHE_ELECTION_TICKS=zero", "STCACHE_ELECTION_TICKS: --election-ticks: 'zero' must be an integer")]
    [InlineData("""{ "bootstrap": true, "join": "127.0.0.1:6000" }""", "", "--bootstrap and --join contradict each other")]
    public void A_bad_setting_is_one_line_naming_its_source(string json, string variable, string expected)
    {
        var environment = new Hashtable();
        if (variable.Length > 0)
        {
            environment[variable[..variable.IndexOf('=', StringComparison.Ordinal)]] = variable[(variable.IndexOf('=', StringComparison.Ordinal) + 1)..];
        }

        var error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse(["--config", WriteConfig(json)], environment));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>
    /// One case per kind of bad value that <see cref="ServerSettings"/>'s compile-time validator checks (out of range,
    /// malformed address, unknown name, unreadable file), from each source. Every message names the flag as it was
    /// given (an alias, a single dash, an STCACHE_* variable, a key of the file).
    /// </summary>
    [Theory]
    [InlineData("range", "--tick-ms=0", "", "", "--tick-ms: '0' must be an integer in [1, 60000]")]
    [InlineData("range", "-max-connections=2000000", "", "", "-max-connections: '2000000' must be an integer in [1, 1000000]")]
    [InlineData("range", "", "STCACHE_SNAPSHOT_THRESHOLD=0", "", "STCACHE_SNAPSHOT_THRESHOLD: --snapshot-threshold: '0' must be an integer in [1, 2147483647]")]
    [InlineData("address", "--http_addr=nonsense", "", "", "--http_addr: 'nonsense' is not host:port")]
    [InlineData("address", "", "STCACHE_RESP=127.0.0.1:99999", "", "STCACHE_RESP: --resp: '127.0.0.1:99999' is not host:port")]
    [InlineData("address", "", "", """{ "join": "no port" }""", "\"join\": --join: 'no port' is not host:port")]
    [InlineData("enum", "--log-level=loud", "", "", "--log-level: unknown value 'loud' (one of Trace, Debug, Information, Warning, Error, Critical, None)")]
    [InlineData("enum", "", "", """{ "log-level": "verbose" }""", "\"log-level\": --log-level: unknown value 'verbose'")]
    [InlineData("size", "--wal-segment-size=1kb", "", "", "--wal-segment-size: '1kb' must be a size from 4096 to 2147483647 bytes (units as in Redis: 16mb, 1gb)")]
    [InlineData("size", "", "STCACHE_WAL_SEGMENT_SIZE=2gb", "", "STCACHE_WAL_SEGMENT_SIZE: --wal-segment-size: '2gb' must be a size from 4096 to 2147483647 bytes")]
    [InlineData("size", "", "", """{ "wal-segment-size": 0 }""", "\"wal-segment-size\": --wal-segment-size: '0' must be a size from 4096")]
    [InlineData("size", "", "STCACHE_WAL_SEGMENT_SIZE=lots", "", "STCACHE_WAL_SEGMENT_SIZE: --wal-segment-size: 'lots' is not a size (bytes, or with a unit as in Redis: 100mb, 2gb)")]
    [InlineData("file", "--auth-token-file=/nonexistent/stcache-token", "", "", "--auth-token-file: cannot read '/nonexistent/stcache-token'")]
    [InlineData("file", "", "STCACHE_TLS_CA=/nonexistent/ca.pem", "", "STCACHE_TLS_CA: --tls-ca: cannot read '/nonexistent/ca.pem'")]
    public void Each_kind_of_bad_value_is_one_line_naming_the_flag_as_given(string kind, string flag, string variable, string json, string expected)
    {
        var environment = new Hashtable();
        if (variable.Length > 0)
        {
            environment[variable[..variable.IndexOf('=', StringComparison.Ordinal)]] = variable[(variable.IndexOf('=', StringComparison.Ordinal) + 1)..];
        }

        string[] args = [.. flag.Length > 0 ? [flag] : Array.Empty<string>(), .. json.Length > 0 ? ["--config", WriteConfig(json)] : Array.Empty<string>()];
        var error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse(args, environment));
        Assert.True(error.Message.Contains(expected, StringComparison.Ordinal), $"{kind}: {error.Message}");
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>--wal-segment-size from each source, in bytes or with Redis's units; 64 MiB when not given. The test
    /// harnesses set it through the variable this names (<see cref="TestNodeSettings"/>).</summary>
    [Fact]
    public void The_wal_segment_size_comes_from_any_source_with_units()
    {
        Assert.Equal(WalOptions.SegmentSizeBytesDefault, ConfigurationSources.Parse([], new Hashtable()).WalSegmentSizeBytes);
        Assert.Equal(64L << 20, WalOptions.SegmentSizeBytesDefault);
        Assert.Equal(1L << 20, ConfigurationSources.Parse(["--wal-segment-size=1mb"], new Hashtable()).WalSegmentSizeBytes);
        Assert.Equal(4096L, ConfigurationSources.Parse(["--wal-segment-size", "4096"], new Hashtable()).WalSegmentSizeBytes);
        Assert.Equal(TestNodeSettings.WalSegmentSizeVariable, ConfigurationSources.VariableName("wal-segment-size"));
        var environment = new Hashtable { [TestNodeSettings.WalSegmentSizeVariable] = TestNodeSettings.WalSegmentSize };
        Assert.Equal(1L << 20, ConfigurationSources.Parse([], environment).WalSegmentSizeBytes);
        Assert.Equal(16L << 10, ConfigurationSources.Parse(["--wal-segment-size=16KB"], environment).WalSegmentSizeBytes);
        Assert.Equal(65536L, ConfigurationSources.Parse(["--config", WriteConfig("""{ "wal-segment-size": 65536 }""")], new Hashtable()).WalSegmentSizeBytes);
        Assert.Equal(2_000_000_000L, ConfigurationSources.Parse(["--config", WriteConfig("""{ "wal-segment-size": "2g" }""")], new Hashtable()).WalSegmentSizeBytes);
    }

    [Fact]
    public void Two_bad_values_are_two_lines()
    {
        var error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse(["--tick-ms=0", "--raft=nowhere"], new Hashtable()));
        string[] lines = error.Message.Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Contains(lines, l => l.StartsWith("--raft: 'nowhere' is not host:port", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("--tick-ms: '0' must be", StringComparison.Ordinal));
    }

    [Fact]
    public void The_settings_validator_is_the_generated_one_and_runs_at_start()
    {
        // Good values pass; the validator type exists (generated by [OptionsValidator]) and finds a bad range.
        ServerSettings.Validate(new Dictionary<string, string> { ["tick-ms"] = "50", ["http"] = ":9090" }, new Dictionary<string, string>());
        var result = new ServerSettingsValidator().Validate(null, new ServerSettings { ElectionTicks = "1" });
        Assert.True(result.Failed);
        Assert.Equal("--election-ticks: '1' must be an integer in [2, 10000]", Assert.Single(result.Failures!));
    }

    [Fact]
    public void A_missing_config_file_is_named()
    {
        var error = Assert.Throws<UsageException>(() => ConfigurationSources.Parse(["--config=/nonexistent/stcache.json"], new Hashtable()));
        Assert.Contains("/nonexistent/stcache.json", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_groups_the_options()
    {
        string usage = CommandLine.Usage();
        string[] groups = ["Cluster:", "Storage and snapshots:", "Raft timing:", "Security:", "Limits:", "Configuration:"];
        int[] positions = [.. groups.Select(g => usage.IndexOf("\n" + g + "\n", StringComparison.Ordinal))];
        Assert.All(positions, p => Assert.True(p >= 0, usage));
        Assert.Equal(positions.Order(), positions);
        Assert.True(usage.IndexOf("--tick-ms", StringComparison.Ordinal) > positions[2] && usage.IndexOf("--tick-ms", StringComparison.Ordinal) < positions[3]);
        Assert.True(usage.IndexOf("--wal-segment-size", StringComparison.Ordinal) > positions[1] && usage.IndexOf("--wal-segment-size", StringComparison.Ordinal) < positions[2]);
        Assert.Contains("--config <value>", usage, StringComparison.Ordinal);
    }

    /// <summary>The real process: configured by file and environment, and a bad setting exits 2 with one line.</summary>
    [Fact]
    public async Task The_node_starts_from_a_config_file_and_environment_and_refuses_a_bad_one()
    {
        int http = FreePorts.Next();
        int raft = FreePorts.Next();
        string file = WriteConfig($$"""{ "http": "127.0.0.1:1", "raft": "127.0.0.1:{{raft}}", "bootstrap": true, "data-dir": "{{Path.Combine(WorkDirectory.Path, "c1")}}" }""");
        var node = new Node("c1", WorkDirectory.Path, http, raft, _ => ["--config", file]);
        Nodes.Add(node);
        Environment.SetEnvironmentVariable("STCACHE_HTTP", "127.0.0.1:" + http);
        try
        {
            node.Start();
        }
        finally
        {
            Environment.SetEnvironmentVariable("STCACHE_HTTP", null);
        }

        await Api.WaitForLeaderAsync([node], Wait);

        var bad = await ChildProcess.RunDotnetAsync("stcached.dll", TimeSpan.FromSeconds(60), "--config", WriteConfig("""{ "max-connections": -5 }"""));
        Assert.Equal(2, bad.Code);
        Assert.Single(bad.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("\"max-connections\": --max-connections: '-5' must be an integer in [1, 1000000]", bad.Stderr, StringComparison.Ordinal);
    }

    /// <summary>The real process, one bad value of each kind: exit code 2 and exactly one line on stderr, no stack trace.</summary>
    [Theory]
    [InlineData("--request-timeout-ms=0", "stcached: --request-timeout-ms: '0' must be an integer in [1, 3600000] (see stcached --help)")]
    [InlineData("--raft_addr=127.0.0.1", "stcached: --raft_addr: '127.0.0.1' is not host:port (see stcached --help)")]
    [InlineData("--log-level=chatty", "stcached: --log-level: unknown value 'chatty' (one of Trace, Debug, Information, Warning, Error, Critical, None) (see stcached --help)")]
    [InlineData("--peer-tls-ca=/nonexistent/peer-ca.pem", "stcached: --peer-tls-ca: cannot read '/nonexistent/peer-ca.pem'")]
    [InlineData("--wal-segment-size=3gb", "stcached: --wal-segment-size: '3gb' must be a size from 4096 to 2147483647 bytes (units as in Redis: 16mb, 1gb) (see stcached --help)")]
    [InlineData("--wal-segment-size=big", "stcached: --wal-segment-size: 'big' is not a size (bytes, or with a unit as in Redis: 100mb, 2gb) (see stcached --help)")]
    public async Task The_process_refuses_a_bad_value_with_one_line(string flag, string expected)
    {
        var bad = await ChildProcess.RunDotnetAsync("stcached.dll", TimeSpan.FromSeconds(60), flag);
        Assert.Equal(2, bad.Code);
        Assert.Equal(string.Empty, bad.Stdout);
        string line = Assert.Single(bad.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", line, StringComparison.Ordinal);
    }
}
