using System.Text;
using System.Text.Json;
using Stcache.Integration.Tests;
using Stcache.Storage;
using Stcache.Testing;

namespace Stcache.Cli.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>stcachectl against real stcached processes: every command a user types, checked by what it prints.</summary>
public sealed class AgainstANodeTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    private Node StartNode(string name, params string[] extra)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + Path.Combine(WorkDirectory.Path, name), .. extra]);
        Nodes.Add(node);
        node.Start();
        return node;
    }

    [Fact]
    public async Task Key_value_commands_status_members_and_cluster_in_table_and_json()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], s_wait);
        var n2 = StartNode("n2", "--join=" + n1.Http);
        await Api.WaitUntilAsync("n2 is a voter", async () =>
            (await Api.StatusAsync(n1))?.GetProperty("voters").GetArrayLength() == 2, s_wait, n1, n2);
        string endpoints = $"{n2.Http},{n1.Http}";

        var set = await CliRunner.RunAsync("-e", endpoints, "set", "greeting", "hello", "--ttl", "3600");
        Assert.True(set.ExitCode == 0, set.ToString());
        Assert.Contains("\"succeeded\":true", set.Out, StringComparison.Ordinal);

        var fromStdin = await CliRunner.RunWithStdinAsync(Encoding.UTF8.GetBytes("from stdin"), "-e", endpoints, "set", "piped", "-");
        Assert.Equal(0, fromStdin.ExitCode);
        var get = await CliRunner.RunAsync("-e", endpoints, "get", "piped");
        Assert.Equal("from stdin", Encoding.UTF8.GetString(get.RawOut));

        var stale = await CliRunner.RunAsync("-e", endpoints, "get", "greeting", "--consistency", "stale");
        Assert.True(stale.ExitCode == 0, stale.ToString());

        var conflict = await CliRunner.RunAsync("-e", endpoints, "set", "greeting", "other", "--prev-version", "999");
        Assert.True(conflict.ExitCode == 1, conflict.ToString());

        var delete = await CliRunner.RunAsync("-e", endpoints, "delete", "greeting");
        Assert.Equal(0, delete.ExitCode);
        var missing = await CliRunner.RunAsync("-e", endpoints, "get", "greeting");
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("404", missing.Error, StringComparison.Ordinal);

        var statusJson = await CliRunner.RunAsync("-e", n1.Http, "status", "-o", "json");
        using (var status = JsonDocument.Parse(statusJson.Out))
        {
            Assert.Equal("leader", status.RootElement.GetProperty("role").GetString());
        }

        var statusTable = await CliRunner.RunAsync("-e", n1.Http, "status");
        Assert.Contains(statusTable.Out.Split('\n'), l => l.Contains("role", StringComparison.Ordinal) && l.Contains("leader", StringComparison.Ordinal));

        var members = await CliRunner.RunAsync("-e", n1.Http, "members");
        Assert.Contains(members.Out.Split('\n'), l => l.Contains(n2.Raft, StringComparison.Ordinal) && l.Contains("follower", StringComparison.Ordinal));
        var membersJson = await CliRunner.RunAsync("-e", n1.Http, "members", "list", "-o", "json");
        Assert.Equal(2, JsonDocument.Parse(membersJson.Out).RootElement.GetArrayLength());

        var cluster = await CliRunner.RunAsync("-e", n2.Http, "cluster", "-o", "json");
        using (var view = JsonDocument.Parse(cluster.Out))
        {
            var rows = view.RootElement.GetProperty("members").EnumerateArray().ToList();
            Assert.Equal(2, rows.Count);
            Assert.All(rows, r => Assert.True(r.GetProperty("reachable").GetBoolean()));
            Assert.All(rows, r => Assert.Equal(JsonValueKind.Number, r.GetProperty("lag").ValueKind));
        }

        var table = await CliRunner.RunAsync("-e", n2.Http, "cluster");
        Assert.Contains("LAG", table.Out, StringComparison.Ordinal);

        var watch = await CliRunner.RunAsync("-e", n1.Http, "watch", "--count", "2", "--interval", "0.1", "-o", "json");
        Assert.True(watch.ExitCode == 0, watch.ToString());
        Assert.Equal(2, watch.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        await n2.KillAsync();
        var down = await CliRunner.RunAsync("-e", n1.Http, "cluster");
        Assert.Contains(down.Out.Split('\n'), l => l.Contains(n2.Http, StringComparison.Ordinal) && l.Contains("down", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Snapshot_save_then_restore_seeds_a_new_cluster_holding_the_data()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], s_wait);
        for (int i = 0; i < 50; i++)
        {
            var write = await CliRunner.RunAsync("-e", n1.Http, "set", "k" + i, "value-" + i);
            Assert.True(write.ExitCode == 0, write.ToString());
        }

        string backup = Path.Combine(WorkDirectory.Path, "backup.snap");
        var save = await CliRunner.RunAsync("-e", n1.Http, "snapshot", "save", backup);
        Assert.True(save.ExitCode == 0, save.ToString());
        Assert.Contains("saved snapshot at index", save.Out, StringComparison.Ordinal);

        // The original keeps running: the restored cluster is a new one, with its own member.
        var restored = new Node("r1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + Path.Combine(WorkDirectory.Path, "r1")]);
        var restore = await CliRunner.RunAsync("snapshot", "restore", backup, "--data-dir", Path.Combine(WorkDirectory.Path, "r1"),
            "--raft", restored.Raft, "--http", restored.Http, "--name", "restored");
        Assert.True(restore.ExitCode == 0, restore.ToString());
        Assert.Equal(WalOptions.SegmentSizeBytesDefault, new FileInfo(Segment(Path.Combine(WorkDirectory.Path, "r1"))).Length);

        var again = await CliRunner.RunAsync("snapshot", "restore", backup, "--data-dir", Path.Combine(WorkDirectory.Path, "r1"));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("not empty", again.Error, StringComparison.Ordinal);

        Nodes.Add(restored);
        restored.Start();
        await Api.WaitForLeaderAsync([restored], s_wait);
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal("value-" + i, await Api.GetStringAsync($"http://{restored.Http}/v1/kv/k{i}"));
        }

        var status = JsonDocument.Parse((await CliRunner.RunAsync("-e", restored.Http, "status", "-o", "json")).Out).RootElement;
        Assert.Equal("restored", status.GetProperty("name").GetString());
        Assert.Equal(1, status.GetProperty("voters").GetArrayLength());

        // A fresh node joins the restored one and receives the data.
        var joiner = StartNode("r2", "--join=" + restored.Http);
        await Api.WaitUntilAsync("r2 serves k49", async () =>
        {
            var (code, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{joiner.Http}/v1/kv/k49?consistency=stale");
            return code == System.Net.HttpStatusCode.OK && body == "value-49";
        }, s_wait, restored, joiner);

        // A corrupted backup is refused before anything is written.
        byte[] bytes = await File.ReadAllBytesAsync(backup);
        bytes[bytes.Length / 2] ^= 0xFF;
        string corrupt = Path.Combine(WorkDirectory.Path, "corrupt.snap");
        await File.WriteAllBytesAsync(corrupt, bytes);
        var refused = await CliRunner.RunAsync("snapshot", "restore", corrupt, "--data-dir", Path.Combine(WorkDirectory.Path, "r3"));
        Assert.Equal(1, refused.ExitCode);
        Assert.False(Directory.Exists(Path.Combine(WorkDirectory.Path, "r3")));

        // Seeded for a node that runs with --wal-segment-size 256kb: its log's segment is that size on disk.
        string sized = Path.Combine(WorkDirectory.Path, "r4");
        var withSize = await CliRunner.RunAsync("snapshot", "restore", backup, "--data-dir", sized, "--wal-segment-size", "256kb");
        Assert.True(withSize.ExitCode == 0, withSize.ToString());
        Assert.Contains("--wal-segment-size 256kb", withSize.Out, StringComparison.Ordinal);
        Assert.Equal(256 * 1024, new FileInfo(Segment(sized)).Length);

        // A size stcached would refuse is a usage error, and nothing is written.
        string unsized = Path.Combine(WorkDirectory.Path, "r5");
        var badSize = await CliRunner.RunAsync("snapshot", "restore", backup, "--data-dir", unsized, "--wal-segment-size", "1kb");
        Assert.True(badSize.ExitCode == 2, badSize.ToString());
        Assert.StartsWith("stcachectl: --wal-segment-size: '1kb' must be a size from 4096 to 2147483647 bytes", badSize.Error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, badSize.Out);
        Assert.False(Directory.Exists(unsized));
    }

    /// <summary>The one write-ahead log segment of a freshly restored data directory.</summary>
    private static string Segment(string dataDirectory) =>
        Assert.Single(Directory.GetFiles(Path.Combine(dataDirectory, DataDirectory.WalDirectoryName), "*.wal"));

    [Fact]
    public async Task Bench_runs_and_reports_throughput()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], s_wait);
        // A warm-up first: on a loaded machine the first requests of a fresh client and node (connections, JIT) can
        // take over a second, and a one-second run without warm-up once finished with no request completed (CI).
        var bench = await CliRunner.RunAsync("-e", n1.Http, "bench", "--duration", "2", "--warmup", "2", "-c", "4", "--keys", "100", "-o", "json");
        Assert.True(bench.ExitCode == 0, bench.ToString());
        using var report = JsonDocument.Parse(bench.Out);
        Assert.True(report.RootElement.GetProperty("succeeded").GetInt64() > 0, bench.Out);
        Assert.Contains("bench: ", bench.Error, StringComparison.Ordinal);
    }

    /// <summary>The built executable as a user runs it: exit codes and streams.</summary>
    [Fact]
    public async Task The_stcachectl_process_prints_a_table_and_exits_with_its_codes()
    {
        var n1 = StartNode("n1", "--bootstrap");
        await Api.WaitForLeaderAsync([n1], s_wait);
        var (code, stdout, _) = await RunProcessAsync("-e", n1.Http, "set", "a", "b");
        Assert.Equal(0, code);
        (code, stdout, _) = await RunProcessAsync("-e", n1.Http, "get", "a");
        Assert.Equal((0, "b"), (code, stdout));
        (code, stdout, _) = await RunProcessAsync("-e", n1.Http, "status");
        Assert.Equal(0, code);
        Assert.Contains("leader", stdout, StringComparison.Ordinal);
        (code, _, string stderr) = await RunProcessAsync("-e", "127.0.0.1:1", "status");
        Assert.Equal(3, code);
        Assert.Contains("no node answered", stderr, StringComparison.Ordinal);
        (code, _, _) = await RunProcessAsync("nonsense");
        Assert.Equal(2, code);
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunProcessAsync(params string[] args)
    {
        var run = await ChildProcess.RunDotnetAsync("stcachectl.dll", TimeSpan.FromSeconds(60), args);
        return (run.Code, run.Stdout, run.Stderr);
    }
}
