using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// A node that cannot start safely refuses to, with a clear message: a data directory locked by a running node, a
/// port already in use, a corrupted write-ahead log. Single-node clusters, each killed at the end.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class StartupErrorTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan s_exitTimeout = TimeSpan.FromSeconds(30);
    private static readonly HttpClient s_http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private readonly List<NodeProcess> _nodes = [];
    private readonly string _root = Path.Combine(Path.GetTempPath(), "stcache-startup-" + Guid.NewGuid().ToString("N")[..12]);

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            node.Kill();
        }

        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }

        return Task.CompletedTask;
    }

    [Fact(Timeout = 90_000)]
    public async Task A_second_process_on_a_locked_data_directory_refuses_to_start()
    {
        var first = SingleNode("first", dataDirectory: Path.Combine(_root, "shared"));
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

    [Fact(Timeout = 60_000)]
    public async Task A_port_already_in_use_gives_a_clear_error()
    {
        using var squatter = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        squatter.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        squatter.Listen(1);
        int taken = ((IPEndPoint)squatter.LocalEndPoint!).Port;

        foreach (string which in new[] { "http", "raft" })
        {
            var node = SingleNode("port-" + which, httpPort: which == "http" ? taken : null, raftPort: which == "raft" ? taken : null);
            node.Start();
            int exit = await node.WaitForExitAsync(s_exitTimeout);
            string said = node.Output();
            output.WriteLine(said);
            Assert.NotEqual(0, exit);
            Assert.True(said.Contains(taken.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
                && (said.Contains("in use", StringComparison.OrdinalIgnoreCase) || said.Contains("address already", StringComparison.OrdinalIgnoreCase)),
                $"the {which} port error names the port and says it is in use:\n{said}");
        }
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

    private NodeProcess SingleNode(string name, string? dataDirectory = null, int? httpPort = null, int? raftPort = null)
    {
        var node = new NodeProcess(name, 1, httpPort ?? FreePorts.Next(), raftPort ?? FreePorts.Next(), dataDirectory ?? Path.Combine(_root, name), null!);
        node.SetArguments(() =>
        [
            "--http=" + node.HttpAddress,
            "--raft=" + node.RaftAddress,
            "--node=" + node.DataDirectory,
            "--bootstrap=true",
            "--tick-ms=50",
        ]);
        _nodes.Add(node);
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
