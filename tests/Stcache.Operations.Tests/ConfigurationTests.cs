using System.Collections;
using System.Diagnostics;
using Stcache.Integration.Tests;
using Stcache.Server;

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

        var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "stcached.dll"));
        info.ArgumentList.Add("--config");
        info.ArgumentList.Add(WriteConfig("""{ "max-connections": -5 }"""));
        using var bad = Process.Start(info)!;
        string stderr = await bad.StandardError.ReadToEndAsync();
        await bad.WaitForExitAsync();
        Assert.Equal(2, bad.ExitCode);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("\"max-connections\": --max-connections: '-5' must be an integer in [1, 1000000]", stderr, StringComparison.Ordinal);
    }
}
