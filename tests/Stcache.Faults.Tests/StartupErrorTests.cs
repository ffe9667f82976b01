using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// A node that cannot start safely refuses to, with a clear message: a data directory locked by a running node, a
/// port already in use, a corrupted write-ahead log, a data directory that is not ours or not readable, a corrupted
/// snapshot. Nothing it refuses is modified, and no acknowledged write is lost. Single-node clusters, each killed at
/// the end.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class StartupErrorTests(ITestOutputHelper output) : NodeTest("stcache-startup-")
{
    private static readonly TimeSpan s_exitTimeout = TimeSpan.FromSeconds(30);
    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(5) };
    [Fact(Timeout = 90_000)]
    public async Task A_second_process_on_a_locked_data_directory_refuses_to_start()
    {
        var first = SingleNode("first", dataDirectory: Path.Combine(Root, "shared"));
        first.Start();
        await WaitHealthyAsync(first);

        var second = SingleNode("second", dataDirectory: first.DataDirectory);
        second.Start();
        int exit = await second.WaitForExitAsync(s_exitTimeout);
        string said = second.Output();
        output.WriteLine(said);
        Assert.NotEqual(0, exit);
        Assert.True(said.Contains("lock", StringComparison.OrdinalIgnoreCase), "the refusal names the lock:\n" + said);
        await AssertServesWritesAsync(first);
    }

    /// <summary>The listeners a node opens, by flag. Another listener's flag added here is tested the same way.</summary>
    public static TheoryData<string> ListenerFlags => ["raft", "http", "resp"];

    /// <summary>
    /// A port already taken by another process: the node exits 1 with one line naming the flag and the address
    /// (no stack trace, no abort), before it creates its data directory. Each listener is bound before anything
    /// else starts, so the refusal comes whichever listener it is.
    /// </summary>
    [Theory(Timeout = 60_000)]
    [MemberData(nameof(ListenerFlags))]
    public async Task A_port_already_in_use_refuses_the_start_with_one_line_and_writes_nothing(string flag)
    {
        int taken = FreePorts.Next();
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, taken));
        squatter.Listen(1);
        string address = FreePorts.Address(taken);

        string dataDirectory = Path.Combine(Root, "port-" + flag);
        var node = flag switch
        {
            "http" => SingleNode("port-" + flag, dataDirectory: dataDirectory, httpPort: taken),
            "raft" => SingleNode("port-" + flag, dataDirectory: dataDirectory, raftPort: taken),
            _ => SingleNode("port-" + flag, dataDirectory: dataDirectory, extra: $"--{flag}={address}"),
        };
        node.Start();
        int exit = await node.WaitForExitAsync(s_exitTimeout);
        string said = node.Output();
        output.WriteLine(said);

        Assert.Equal(1, exit);
        string[] lines = [.. said.Split('\n').Where(l => l.Length > 0 && !l.StartsWith("---- ", StringComparison.Ordinal))];
        string line = Assert.Single(lines);
        Assert.Equal($"stcached: --{flag} {address}: address already in use (another process is listening there)", line);
        Assert.False(Directory.Exists(dataDirectory), $"the refused start created its data directory {dataDirectory}");
    }

    [Fact(Timeout = 90_000)]
    public async Task A_corrupted_wal_at_start_gives_a_clear_error_naming_the_file()
    {
        var node = SingleNode("wal");
        node.Start();
        await WaitHealthyAsync(node);
        for (int i = 0; i < 50; i++)
        {
            using var put = await s_http.PutAsync(new Uri(node.BaseUri, "/v1/kv/key" + i), new StringContent(new string('v', 200) + i));
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }

        node.Kill();
        string segment = Directory.GetFiles(node.DataDirectory, "*.wal", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).First();
        byte[] bytes = await File.ReadAllBytesAsync(segment);
        output.WriteLine($"{segment}: {bytes.Length} bytes");

        // Segments are preallocated: find the written records, then flip bytes in their middle, with good records
        // after them. That is corruption, not a torn tail, and must not be "repaired" by truncation.
        int written = Array.FindLastIndex(bytes, b => b != 0) + 1;
        Assert.True(written > 4096, $"expected some KB of records, found {written} bytes");
        int middle = written / 2;
        for (int i = middle; i < middle + 16; i++)
        {
            bytes[i] ^= 0x5A;
        }

        await File.WriteAllBytesAsync(segment, bytes);
        node.Start();
        var exited = await Task.WhenAny(node.WaitForExitAsync(s_exitTimeout), Task.Delay(s_exitTimeout + TimeSpan.FromSeconds(1)));
        string said = node.Output();
        output.WriteLine(said);
        if (node.IsRunning)
        {
            // It started: then it must not have silently dropped acknowledged writes.
            await WaitHealthyAsync(node);
            for (int i = 0; i < 50; i++)
            {
                using var get = await s_http.GetAsync(new Uri(node.BaseUri, "/v1/kv/key" + i));
                Assert.True(get.StatusCode == HttpStatusCode.OK, $"node started on a corrupted WAL and lost key{i} (acknowledged):\n{said}");
            }

            Assert.Fail("node started on a WAL corrupted in the middle without an error:\n" + said);
        }

        Assert.NotEqual(0, node.ExitCode);
        Assert.True(said.Contains(Path.GetFileName(segment), StringComparison.Ordinal), $"the error names {Path.GetFileName(segment)}:\n{said}");
        _ = exited;
    }

    public static TheoryData<string> ForeignDataDirectories => ["directory-with-other-files", "regular-file"];

    /// <summary>
    /// A --node path holding someone else's data: a directory with unrelated files, or a regular file. The node exits
    /// non-zero naming the path, and creates, changes or deletes nothing there.
    /// </summary>
    [Theory(Timeout = 60_000)]
    [MemberData(nameof(ForeignDataDirectories))]
    public async Task A_data_directory_that_is_not_ours_is_refused_and_left_untouched(string kind)
    {
        string path = Path.Combine(Root, kind);
        if (kind == "regular-file")
        {
            await File.WriteAllTextAsync(path, "not a data directory\n");
        }
        else
        {
            Directory.CreateDirectory(Path.Combine(path, "photos"));
            await File.WriteAllTextAsync(Path.Combine(path, "notes.txt"), "precious\n");
            await File.WriteAllBytesAsync(Path.Combine(path, "photos", "cat.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]);
        }

        var before = Fingerprint(path);
        var node = SingleNode(kind, dataDirectory: path);
        node.Start();
        int exit = await node.WaitForExitAsync(s_exitTimeout);
        string said = node.Output();
        output.WriteLine(said);

        Assert.NotEqual(0, exit);
        Assert.True(said.Contains("stcached: ", StringComparison.Ordinal) && said.Contains(path, StringComparison.Ordinal),
            $"the refusal names {path}:\n{said}");
        Assert.True(said.Contains(kind == "regular-file" ? "is a file, not a data directory" : "not a stcache data directory", StringComparison.Ordinal),
            "the refusal says why:\n" + said);
        Assert.Equal(before, Fingerprint(path));
    }

    /// <summary>
    /// A data directory the node may not read (mode 000) holding someone else's file. As an ordinary user the node
    /// cannot list it and exits naming the path ("access denied"). These tests usually run as root, whom mode bits
    /// do not stop: then the node can list the directory, and must refuse it as not ours instead (the regular-file
    /// case of the test above is the refusal that holds for root too). Either way: non-zero exit, the file and the
    /// mode unchanged.
    /// </summary>
    [Fact(Timeout = 60_000)]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task An_unreadable_data_directory_is_refused_and_left_untouched()
    {
        string path = Path.Combine(Root, "unreadable");
        Directory.CreateDirectory(path);
        await File.WriteAllTextAsync(Path.Combine(path, "notes.txt"), "precious\n");
        var before = Fingerprint(path);
        File.SetUnixFileMode(path, UnixFileMode.None);
        try
        {
            bool root = Environment.UserName == "root";
            var node = SingleNode("unreadable", dataDirectory: path);
            node.Start();
            int exit = await node.WaitForExitAsync(s_exitTimeout);
            string said = node.Output();
            output.WriteLine($"running as {(root ? "root: mode bits do not apply" : Environment.UserName)}\n{said}");

            Assert.NotEqual(0, exit);
            Assert.True(said.Contains(path, StringComparison.Ordinal), $"the refusal names {path}:\n{said}");
            Assert.True(said.Contains(root ? "not a stcache data directory" : "denied", StringComparison.Ordinal), "the refusal says why:\n" + said);
            Assert.Equal(UnixFileMode.None, File.GetUnixFileMode(path));
        }
        finally
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        Assert.Equal(before, Fingerprint(path));
    }

    /// <summary>
    /// Snapshots at 20 and 40 keys, 10 more keys in the log, kill -9, bytes flipped in the newest snapshot. The store
    /// skips a snapshot that fails its checksum, but the write-ahead log recorded the newest snapshot and dropped the
    /// entries it covers, so the older one cannot rebuild the state: the node refuses to start and names the corrupt
    /// file, rather than serve a cache that silently lacks acknowledged writes. It deletes nothing, so with the file
    /// restored (here: the original bytes; in production: rebuilt from a peer) every acknowledged key is back.
    /// </summary>
    [Fact(Timeout = 90_000)]
    public async Task A_corrupted_newest_snapshot_at_start_is_refused_naming_the_file_and_loses_nothing()
    {
        var node = SingleNode("snapshot-newest", extra: "--snapshot-interval-s=3600");
        node.Start();
        await WaitHealthyAsync(node);
        await PutKeysAsync(node, 0, 20);
        await SnapshotAsync(node);
        await PutKeysAsync(node, 20, 40);
        await SnapshotAsync(node);
        await PutKeysAsync(node, 40, 50);
        node.Kill();

        string[] snapshots = SnapshotFiles(node);
        Assert.Equal(2, snapshots.Length);
        string newest = snapshots[^1];
        await AssertRefusedThenRecoveredAsync(node, newest, keys: 50, untouched: snapshots[0]);
    }

    /// <summary>The only snapshot is corrupt (30 keys in it, 10 after it in the log): refused, named, nothing lost.</summary>
    [Fact(Timeout = 90_000)]
    public async Task A_corrupted_only_snapshot_at_start_is_refused_naming_the_file_and_loses_nothing()
    {
        var node = SingleNode("snapshot-only", extra: "--snapshot-interval-s=3600");
        node.Start();
        await WaitHealthyAsync(node);
        await PutKeysAsync(node, 0, 30);
        await SnapshotAsync(node);
        await PutKeysAsync(node, 30, 40);
        node.Kill();

        string only = Assert.Single(SnapshotFiles(node));
        await AssertRefusedThenRecoveredAsync(node, only, keys: 40, untouched: null);
    }

    private async Task AssertRefusedThenRecoveredAsync(NodeProcess node, string corrupt, int keys, string? untouched)
    {
        byte[] original = await File.ReadAllBytesAsync(corrupt);
        byte[]? untouchedBytes = untouched is null ? null : await File.ReadAllBytesAsync(untouched);
        byte[] damaged = (byte[])original.Clone();
        int middle = damaged.Length / 2;
        for (int i = middle; i < middle + 8; i++)
        {
            damaged[i] ^= 0x5A;
        }

        await File.WriteAllBytesAsync(corrupt, damaged);
        output.WriteLine($"flipped 8 bytes at offset {middle} of {corrupt} ({original.Length} bytes)");

        node.Start();
        int exit = await node.WaitForExitAsync(s_exitTimeout);
        string said = node.Output();
        output.WriteLine(said);
        Assert.NotEqual(0, exit);
        string refusal = said.Split('\n').LastOrDefault(l => l.StartsWith("stcached: ", StringComparison.Ordinal)) ?? string.Empty;
        Assert.True(refusal.Contains(Path.GetFileName(corrupt), StringComparison.Ordinal), $"the exit message names {Path.GetFileName(corrupt)}:\n{said}");
        Assert.Contains("failed verification", refusal, StringComparison.Ordinal);

        // Refusing changed nothing: the corrupt file is kept for inspection, the older snapshot too.
        Assert.Equal(damaged, await File.ReadAllBytesAsync(corrupt));
        if (untouched is not null)
        {
            Assert.Equal(untouchedBytes, await File.ReadAllBytesAsync(untouched));
        }

        await File.WriteAllBytesAsync(corrupt, original);
        node.Start();
        await WaitHealthyAsync(node);
        for (int i = 0; i < keys; i++)
        {
            using var get = await s_http.GetAsync(new Uri(node.BaseUri, "/v1/kv/key" + i.ToString(CultureInfo.InvariantCulture)));
            Assert.True(get.StatusCode == HttpStatusCode.OK, $"key{i} (acknowledged) missing after the snapshot was restored:\n{node.Tail(30)}");
            Assert.Equal(Value(i), await get.Content.ReadAsStringAsync());
        }
    }

    private static async Task PutKeysAsync(NodeProcess node, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            using var put = await s_http.PutAsync(new Uri(node.BaseUri, "/v1/kv/key" + i.ToString(CultureInfo.InvariantCulture)), new StringContent(Value(i), Encoding.UTF8));
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }
    }

    private static async Task SnapshotAsync(NodeProcess node)
    {
        using var snapshot = await s_http.PostAsync(new Uri(node.BaseUri, "/v1/snapshot"), null);
        Assert.Equal(HttpStatusCode.OK, snapshot.StatusCode);
    }

    private static string Value(int i) => "value-" + i.ToString(CultureInfo.InvariantCulture) + new string('v', 40);

    private static string[] SnapshotFiles(NodeProcess node) =>
        [.. Directory.GetFiles(Path.Combine(node.DataDirectory, "snap"), "*.snap").OrderBy(f => f, StringComparer.Ordinal)];

    /// <summary>Every entry under <paramref name="path"/> (or the file itself): relative name, kind and content.</summary>
    private static string Fingerprint(string path)
    {
        if (File.Exists(path))
        {
            return "file " + Convert.ToHexString(File.ReadAllBytes(path));
        }

        var text = new StringBuilder();
        foreach (string entry in Directory.EnumerateFileSystemEntries(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            string name = Path.GetRelativePath(path, entry);
            text.AppendLine(File.Exists(entry) ? $"{name} {Convert.ToHexString(File.ReadAllBytes(entry))}" : name + "/");
        }

        return text.ToString();
    }

    private NodeProcess SingleNode(string name, string? dataDirectory = null, int? httpPort = null, int? raftPort = null, params string[] extra)
    {
        var node = new NodeProcess(name, 1, httpPort ?? FreePorts.Next(), raftPort ?? FreePorts.Next(), dataDirectory ?? Path.Combine(Root, name), null!);
        node.SetArguments(() =>
        [
            "--http=" + node.HttpAddress,
            "--raft=" + node.RaftAddress,
            "--node=" + node.DataDirectory,
            "--bootstrap=true",
            "--tick-ms=50",
            .. extra,
        ]);
        Nodes.Add(node);
        return node;
    }

    private static async Task WaitHealthyAsync(NodeProcess node)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            Assert.True(node.IsRunning, $"{node.Name} exited:\n{node.Tail(30)}");
            try
            {
                using var ready = await s_http.GetAsync(new Uri(node.BaseUri, "/readyz"));
                if (ready.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }

            Assert.True(DateTime.UtcNow < deadline, $"{node.Name} not ready in 30s:\n{node.Tail(30)}");
            await Task.Delay(50);
        }
    }

    private static async Task AssertServesWritesAsync(NodeProcess node)
    {
        using var put = await s_http.PutAsync(new Uri(node.BaseUri, "/v1/kv/still-works"), new StringContent("yes", Encoding.UTF8));
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
    }
}
