using System.Net;
using System.Text;
using Stcache.Integration.Tests;
using Stcache.Storage;

namespace Stcache.Operations.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>
/// <c>--wal-segment-size</c> with the real process: a node cuts segments of that size, a crash and a restart with
/// another size lose no acknowledged write, and without the setting a segment is 64 MiB. (A bad value is refused with
/// exit code 2: <see cref="ConfigurationTests"/>.)
/// </summary>
public sealed class WalSegmentSizeTests : ClusterTest
{
    // About 300 bytes of log per write: 16 KiB holds some 50 of them.
    private static readonly string s_value = new('v', 200);

    [Fact]
    public async Task A_node_cuts_segments_of_the_given_size_and_a_crash_restart_with_another_size_keeps_every_write()
    {
        string size = "16kb";
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + DataDirectoryOf("n1"), "--bootstrap", "--wal-segment-size=" + size]);
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], Wait);
        await WriteAsync(node, 0, 200);

        // The flag wins over the harness's STCACHE_WAL_SEGMENT_SIZE: every segment is preallocated to 16 KiB (no
        // batch of one write is larger), and 200 writes took several.
        string[] before = Segments();
        Assert.True(before.Length >= 3, $"{before.Length} segments after 200 writes of 16 KiB segments\n{Api.Tail(node.Output, 40)}");
        Assert.All(before, segment => Assert.Equal(16 * 1024, new FileInfo(segment).Length));

        // kill -9, then a larger size: the old segments are read as they are, the active one grows to the new size.
        await node.KillAsync();
        size = "64kb";
        node.Start();
        await Api.WaitForLeaderAsync([node], Wait);
        await WriteAsync(node, 200, 500);
        for (int i = 0; i < 500; i++)
        {
            Assert.Equal(s_value + i, await Api.GetStringAsync($"http://{node.Http}/v1/kv/key{i}"));
        }

        string[] after = Segments();
        Assert.Equal(before[..^1], after[..(before.Length - 1)]);
        Assert.True(after.Length > before.Length, $"no segment cut after the restart\n{Api.Tail(node.Output, 40)}");
        Assert.Equal(64 * 1024, new FileInfo(after[^1]).Length);
    }

    [Fact]
    public async Task Without_the_setting_a_segment_is_64_MiB_and_a_clean_restart_keeps_every_write()
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            ["--http=" + n.Http, "--raft=" + n.Raft, "--data-dir=" + DataDirectoryOf("n1"), "--bootstrap"])
        {
            WalSegmentSize = null,
        };
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], Wait);
        await WriteAsync(node, 0, 20);

        // SIGTERM: the node closes its log while the next segment may still be in preparation.
        await node.StopAsync();
        Assert.Equal(0, node.ExitCode);
        string segment = Assert.Single(Segments());
        Assert.Equal(WalOptions.SegmentSizeBytesDefault, new FileInfo(segment).Length);

        node.Start();
        await Api.WaitForLeaderAsync([node], Wait);
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(s_value + i, await Api.GetStringAsync($"http://{node.Http}/v1/kv/key{i}"));
        }
    }

    private string[] Segments() =>
        [.. Directory.GetFiles(Path.Combine(DataDirectoryOf("n1"), DataDirectory.WalDirectoryName), "*.wal").Order(StringComparer.Ordinal)];

    private static async Task WriteAsync(Node node, int from, int to)
    {
        for (int i = from; i < to; i++)
        {
            var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/key{i}", Encoding.UTF8.GetBytes(s_value + i));
            Assert.True(status == HttpStatusCode.OK, $"write {i}: {(int)status} {body}");
        }
    }
}
