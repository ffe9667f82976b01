using System.Text.Json;
using Stcache.Cli;
using Stcache.Server;

namespace Stcache.Cli.Tests;

/// <summary>Parsing and rendering, with no node: usage errors, help, and the tables and JSON built from API views.</summary>
public sealed class ParsingAndOutputTests
{
    [Fact]
    public async Task Help_lists_every_command()
    {
        var result = await CliRunner.RunAsync("--help");
        Assert.Equal(0, result.ExitCode);
        foreach (string command in new[] { "get", "set", "delete", "members", "transfer-leader", "snapshot", "status", "cluster", "watch", "bench", "inspect", "recover" })
        {
            Assert.Contains(command, result.Out, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Set_help_offers_the_ttl_option()
    {
        var result = await CliRunner.RunAsync("set", "--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--ttl", result.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("status", "-o", "yaml")]
    [InlineData("get")]
    [InlineData("set", "k", "v", "--ttl", "soon")]
    [InlineData("get", "k", "--consistency", "eventual")]
    [InlineData("snapshot", "restore", "backup.snap")]
    public async Task Bad_usage_exits_2_with_a_message(params string[] args)
    {
        var result = await CliRunner.RunAsync(args);
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith("stcachectl: ", result.Error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, result.Out);
    }

    /// <summary><c>snapshot restore --wal-segment-size</c> takes what stcached takes, and refuses the rest in stcached's
    /// words, with the usage exit code, before it reads the backup or creates the data directory.</summary>
    [Theory]
    [InlineData("1kb")]
    [InlineData("3gb")]
    [InlineData("big")]
    public async Task Restore_refuses_a_wal_segment_size_as_stcached_does(string size)
    {
        string expected = Assert.Throws<UsageException>(() => CommandLine.Parse(["--wal-segment-size=" + size])).Message;
        string dataDirectory = Path.Combine(Path.GetTempPath(), "stcache-restore-" + Guid.NewGuid().ToString("N"));
        var result = await CliRunner.RunAsync("snapshot", "restore", "no-such-backup.snap", "--data-dir", dataDirectory, "--wal-segment-size", size);
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal("stcachectl: " + expected + "\n", result.Error);
        Assert.Equal(string.Empty, result.Out);
        Assert.False(Directory.Exists(dataDirectory));
    }

    [Theory]
    [InlineData("256kb", 256 * 1024)]
    [InlineData("4096", 4096)]
    [InlineData("1MB", 1 << 20)]
    public void The_wal_segment_size_parses_as_stcached_parses_it(string size, long bytes)
    {
        Assert.Equal(bytes, CommandLine.ParseWalSegmentSize(size));
        Assert.Equal(bytes, CommandLine.Parse(["--wal-segment-size=" + size]).WalSegmentSizeBytes);
    }

    [Fact]
    public async Task A_non_positive_ttl_is_refused_before_any_request()
    {
        // Port 1 on loopback: nothing listens, so reaching the network would exit 3, not 2.
        var result = await CliRunner.RunAsync("--endpoints", "127.0.0.1:1", "set", "k", "v", "--ttl", "0");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--ttl", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_node_answering_exits_3_and_names_the_endpoints()
    {
        var result = await CliRunner.RunAsync("--endpoints", "127.0.0.1:1,127.0.0.1:2", "status");
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("127.0.0.1:1", result.Error, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1:2", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Lag_is_the_leaders_commit_minus_each_members_applied_index()
    {
        var view = new ClusterView("1", 7,
        [
            Member("1", "leader", Status("1", "leader", commit: 100, applied: 100)),
            Member("2", "follower", Status("2", "follower", commit: 98, applied: 90)),
            new ClusterMemberView(new MemberView("3", "n3", "127.0.0.1:7003", "127.0.0.1:6003", "follower", 50), null, "unreachable: connection refused"),
        ]);

        var summary = ClusterRows.From(view);

        Assert.Equal([0UL, 10UL], summary.Members.Take(2).Select(m => m.Lag!.Value));
        Assert.Null(summary.Members[2].Lag);
        Assert.False(summary.Members[2].Reachable);
        string json = Render.ToJson(summary, CliJson.Default.ClusterSummary);
        using var document = JsonDocument.Parse(json);
        Assert.Equal(10UL, document.RootElement.GetProperty("members")[1].GetProperty("lag").GetUInt64());
        Assert.Equal("unreachable: connection refused", document.RootElement.GetProperty("members")[2].GetProperty("error").GetString());
    }

    [Fact]
    public void The_cluster_table_shows_roles_lag_and_down_members()
    {
        var summary = ClusterRows.From(new ClusterView("1", 7,
        [
            Member("1", "leader", Status("1", "leader", commit: 100, applied: 100)),
            Member("2", "follower", Status("2", "follower", commit: 98, applied: 90)),
            new ClusterMemberView(new MemberView("3", "n3", "127.0.0.1:7003", "127.0.0.1:6003", "follower", 50), null, "unreachable"),
        ]));
        var writer = new StringWriter();
        var io = new CliIo { Stdout = Stream.Null, Out = writer, Error = TextWriter.Null, OpenStdin = () => Stream.Null };
        io.CreateConsole().Write(Render.ClusterTable(summary));
        string[] lines = writer.ToString().Split('\n');

        Assert.Contains(lines, l => l.Contains("n1", StringComparison.Ordinal) && l.Contains("leader", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("n2", StringComparison.Ordinal) && l.Contains("10", StringComparison.Ordinal) && l.Contains("follower", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("n3", StringComparison.Ordinal) && l.Contains("down", StringComparison.Ordinal));
        Assert.DoesNotContain("\u001b[", writer.ToString(), StringComparison.Ordinal); // no colour codes off a terminal
    }

    private static ClusterMemberView Member(string id, string role, StatusView status) =>
        new(new MemberView(id, "n" + id, "127.0.0.1:700" + id, "127.0.0.1:600" + id, role, status.Applied), status, null);

    private static StatusView Status(string id, string role, ulong commit, ulong applied) =>
        new(id, "n" + id, role, 7, "1", "127.0.0.1:6001", commit, applied, commit, 0, 3, ["1", "2", "3"], []);
}
