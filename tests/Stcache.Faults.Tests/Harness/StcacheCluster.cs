using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Serialization;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Harness;

/// <summary>What /v1/status answers (the fields the tests use).</summary>
public sealed record NodeStatus(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("commit")] ulong Commit,
    [property: JsonPropertyName("applied")] ulong Applied,
    [property: JsonPropertyName("keys")] int Keys,
    [property: JsonPropertyName("voters")] string[] Voters);

public sealed record ClusterOptions
{
    public int Voters { get; init; } = 3;

    /// <summary>Extra slots (ports, proxies, data directories) for members added later.</summary>
    public int Spares { get; init; } = 1;

    public int TickMilliseconds { get; init; } = 50;

    public int ElectionTicks { get; init; } = 10;

    public int RequestTimeoutMilliseconds { get; init; } = 2000;

    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    /// <summary>Every node also listens for Redis clients (<c>--resp</c>) on its slot's RESP port.</summary>
    public bool Resp { get; init; }

    /// <summary>Information shows elections and membership in the failure dump.</summary>
    public string LogLevel { get; init; } = "Information";

    public TimeSpan ElectionTimeout => TimeSpan.FromMilliseconds(TickMilliseconds * ElectionTicks);
}

/// <summary>
/// Real stcached processes on loopback. Every directed peer link (A dials B) goes through its own
/// <see cref="FaultProxy"/>: each node starts with <c>--peer-dial</c> pointing its peers at the proxies of its
/// outgoing links. Founders form a static cluster (<c>--raft_cluster</c>); spare slots join later.
/// Disposing kills every process and proxy and deletes the data directories.
/// </summary>
public sealed class StcacheCluster : IAsyncDisposable
{
    private static readonly HttpClient s_http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
    {
        Timeout = TimeSpan.FromSeconds(3),
    };

    private readonly Dictionary<(string From, string To), FaultProxy> _links = [];
    private readonly Action<string> _log;

    private StcacheCluster(ClusterOptions options, string root, Action<string> log)
    {
        Options = options;
        Root = root;
        _log = log;
    }

    public ClusterOptions Options { get; }

    public string Root { get; }

    /// <summary>All slots: founders first, then spares.</summary>
    public List<NodeProcess> Nodes { get; } = [];

    public IEnumerable<NodeProcess> Founders => Nodes.Take(Options.Voters);

    public IEnumerable<FaultProxy> Links => _links.Values;

    public static async Task<StcacheCluster> StartAsync(ClusterOptions options, Action<string> log, TimeSpan timeout)
    {
        string root = Path.Combine(Path.GetTempPath(), "stcache-faults-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var cluster = new StcacheCluster(options, root, log);
        try
        {
            cluster.CreateSlots();
            foreach (var node in cluster.Founders)
            {
                node.Start();
            }

            await cluster.WaitForLeaderAsync(timeout);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    public FaultProxy Link(NodeProcess from, NodeProcess to) => _links[(from.Name, to.Name)];

    public NodeProcess Node(string id) => Nodes.Single(n => n.Id.ToString(CultureInfo.InvariantCulture) == id);

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            node.Kill();
        }

        foreach (var link in _links.Values)
        {
            await link.DisposeAsync();
        }

        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log($"could not delete {Root}: {e.Message}");
        }
    }

    // ---- faults -------------------------------------------------------------------------------------------

    public void SetLinks(Func<NodeProcess, NodeProcess, bool> select, LinkMode mode)
    {
        foreach (var from in Nodes)
        {
            foreach (var to in Nodes)
            {
                if (from != to && select(from, to))
                {
                    Link(from, to).Mode = mode;
                }
            }
        }
    }

    /// <summary>Cuts every link between the two sides, both ways.</summary>
    public void Partition(IReadOnlyCollection<NodeProcess> side) =>
        SetLinks((a, b) => side.Contains(a) != side.Contains(b), LinkMode.Blackhole);

    public void Isolate(NodeProcess node) => Partition([node]);

    /// <summary>Messages from <paramref name="from"/> to the others are lost; the other direction works.</summary>
    public void CutOutgoing(NodeProcess from) => SetLinks((a, _) => a == from, LinkMode.Blackhole);

    public void DelayAll(TimeSpan delay)
    {
        foreach (var link in _links.Values)
        {
            link.Delay = delay;
        }
    }

    public void HealLinks()
    {
        foreach (var link in _links.Values)
        {
            link.Delay = TimeSpan.Zero;
            link.Mode = LinkMode.Pass;
        }
    }

    /// <summary>Heals links, resumes paused nodes and restarts killed members.</summary>
    public void HealAll(IReadOnlyCollection<NodeProcess> members)
    {
        HealLinks();
        foreach (var node in Nodes)
        {
            if (node.IsPaused)
            {
                node.Resume();
            }
        }

        foreach (var node in members)
        {
            if (!node.IsRunning)
            {
                node.Start();
            }
        }
    }

    // ---- status and waits ---------------------------------------------------------------------------------

    public static async Task<NodeStatus?> TryStatusAsync(NodeProcess node, CancellationToken cancellationToken = default)
    {
        if (!node.IsRunning || node.IsPaused)
        {
            return null;
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(1));
            return await s_http.GetFromJsonAsync<NodeStatus>(new Uri(node.BaseUri, "/v1/status"), timeout.Token);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>Polls until <paramref name="condition"/> holds; throws with the cluster's state at the deadline.</summary>
    public async Task<T> WaitAsync<T>(string what, TimeSpan timeout, Func<Task<T?>> condition)
        where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var result = await condition();
            if (result is not null)
            {
                return result;
            }

            if (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException($"{what}: not reached within {timeout.TotalSeconds}s\n{await DescribeAsync()}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>The running members agree on one leader, which is among them and says it leads.</summary>
    public Task<NodeProcess> WaitForLeaderAsync(TimeSpan timeout, IReadOnlyCollection<NodeProcess>? among = null) =>
        WaitAsync("one leader", timeout, async () =>
        {
            var nodes = (among ?? Nodes.Where(n => n.IsRunning && !n.IsPaused)).ToList();
            var statuses = await Task.WhenAll(nodes.Select(n => TryStatusAsync(n)));
            if (statuses.Any(s => s is null) || statuses.Length == 0)
            {
                return null;
            }

            var leaders = statuses.Select(s => s!.Leader).Distinct().ToList();
            if (leaders.Count != 1 || leaders[0] == "0")
            {
                return null;
            }

            var leader = nodes.FirstOrDefault(n => n.Id.ToString(CultureInfo.InvariantCulture) == leaders[0]);
            var leaderStatus = leader is null ? null : statuses[nodes.IndexOf(leader)];
            return leaderStatus is { Role: "leader" } ? leader : null;
        });

    /// <summary>Every member runs, and all agree on leader, commit index and applied index.</summary>
    public Task<NodeStatus[]> WaitForConvergenceAsync(IReadOnlyCollection<NodeProcess> members, TimeSpan timeout) =>
        WaitAsync("convergence", timeout, async () =>
        {
            var statuses = await Task.WhenAll(members.Select(n => TryStatusAsync(n)));
            if (statuses.Any(s => s is null))
            {
                return null;
            }

            var all = statuses.Select(s => s!).ToArray();
            bool agree = all.Select(s => s.Leader).Distinct().Count() == 1 && all[0].Leader != "0"
                && all.Select(s => s.Commit).Distinct().Count() == 1
                && all.All(s => s.Applied == s.Commit)
                && all.All(s => s.Voters.Length == members.Count);
            return agree ? all : null;
        });

    public async Task<string> DescribeAsync()
    {
        var text = new StringBuilder();
        foreach (var node in Nodes.Where(n => n.Starts > 0))
        {
            var status = await TryStatusAsync(node);
            text.Append(CultureInfo.InvariantCulture, $"  {node.MemberName} id {node.Id} running={node.IsRunning} paused={node.IsPaused}: ");
            text.AppendLine(status is null ? "no status" : $"{status.Role} term {status.Term} leader {status.Leader} commit {status.Commit} applied {status.Applied} keys {status.Keys} voters [{string.Join(',', status.Voters)}]");
        }

        foreach (var link in _links.Values.Where(l => l.ConnectionsAccepted > 0))
        {
            text.Append("  link ").AppendLine(link.ToString());
        }

        return text.ToString();
    }

    // ---- membership ---------------------------------------------------------------------------------------

    /// <summary>Removes a member through the leader; retries while there is no leader.</summary>
    public async Task RemoveMemberAsync(NodeProcess member, IReadOnlyCollection<NodeProcess> live, TimeSpan timeout)
    {
        await WaitAsync($"remove {member.Name}", timeout, async () =>
        {
            foreach (var node in live.Where(n => n.IsRunning && !n.IsPaused))
            {
                try
                {
                    using var response = await s_http.DeleteAsync(new Uri(node.BaseUri, "/v1/cluster/members/" + member.Id.ToString(CultureInfo.InvariantCulture)));
                    string body = await response.Content.ReadAsStringAsync();
                    _log($"remove {member.Name} via {node.Name}: {(int)response.StatusCode} {body.Trim()}");
                    if (response.IsSuccessStatusCode || response.StatusCode == System.Net.HttpStatusCode.NotFound)
                    {
                        return node;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
                {
                }
            }

            return null;
        });
    }

    /// <summary>Starts a spare slot that joins through a live member; waits until the members list it as a voter.</summary>
    public async Task AddSpareAsync(NodeProcess spare, IReadOnlyCollection<NodeProcess> live, TimeSpan timeout)
    {
        var contact = live.First(n => n.IsRunning && !n.IsPaused);
        spare.SetArguments(() => SpareArguments(spare, contact));
        spare.Start();
        string id = spare.Id.ToString(CultureInfo.InvariantCulture);
        await WaitAsync($"{spare.Name} joins", timeout, async () =>
        {
            var statuses = await Task.WhenAll(live.Append(spare).Select(n => TryStatusAsync(n)));
            return statuses.All(s => s is not null && s.Voters.Contains(id)) ? statuses : null;
        });
    }

    // ---- setup --------------------------------------------------------------------------------------------

    private void CreateSlots()
    {
        int slots = Options.Voters + Options.Spares;
        for (int k = 1; k <= slots; k++)
        {
            string name = "n" + k.ToString(CultureInfo.InvariantCulture);
            ulong id = k <= Options.Voters ? (ulong)k : IdFromName(NodeProcess.IncarnationName(name, 0));
            string directory = Path.Combine(Root, name);
            NodeProcess? node = null;
            node = new NodeProcess(name, id, FreePorts.Next(), FreePorts.Next(), directory, () => FounderArguments(node!));
            Nodes.Add(node);
        }

        foreach (var from in Nodes)
        {
            foreach (var to in Nodes.Where(n => n != from))
            {
                _links[(from.Name, to.Name)] = new FaultProxy($"{from.Name}->{to.Name}", to.RaftPort);
            }
        }
    }

    private List<string> CommonArguments(NodeProcess node)
    {
        // Each slot may come back as a new member after a wipe; its future ids dial the same proxies.
        var dial = Nodes.Where(n => n != node)
            .SelectMany(n => Enumerable.Range(0, IncarnationsMax + 1).Select(i => (Id: SlotId(n, i), Port: Link(node, n).Port)))
            .Select(d => d.Id.ToString(CultureInfo.InvariantCulture) + "/" + FreePorts.Address(d.Port));
        return
        [
            "--http=" + node.HttpAddress,
            "--raft=" + node.RaftAddress,
            "--node=" + node.DataDirectory,
            "--peer-dial=" + string.Join(',', dial),
            "--tick-ms=" + Options.TickMilliseconds.ToString(CultureInfo.InvariantCulture),
            "--election-ticks=" + Options.ElectionTicks.ToString(CultureInfo.InvariantCulture),
            "--request-timeout-ms=" + Options.RequestTimeoutMilliseconds.ToString(CultureInfo.InvariantCulture),
            "--log-level=" + Options.LogLevel,
            .. Options.Resp ? ["--resp=" + node.RespAddress] : Array.Empty<string>(),
            .. Options.ExtraArguments,
        ];
    }

    public const int IncarnationsMax = 6;

    private ulong SlotId(NodeProcess slot, int incarnation)
    {
        int index = Nodes.IndexOf(slot) + 1;
        return incarnation == 0 && index <= Options.Voters ? (ulong)index : IdFromName(NodeProcess.IncarnationName(slot.Name, incarnation));
    }

    /// <summary>
    /// A node whose data directory was lost comes back as a new member: removed under its old id (by the caller),
    /// wiped, restarted with a new name and id, and added through a live member.
    /// </summary>
    public async Task RejoinWipedAsync(NodeProcess node, IReadOnlyCollection<NodeProcess> live, TimeSpan timeout)
    {
        if (node.Incarnation >= IncarnationsMax)
        {
            throw new InvalidOperationException($"{node.Name} has no incarnation left");
        }

        node.Kill();
        node.WipeDataDirectory();
        node.BecomeNewMember(SlotId(node, node.Incarnation + 1));
        await AddSpareAsync(node, live, timeout);
    }

    private List<string> FounderArguments(NodeProcess node)
    {
        var cluster = Founders.Select(n => n.Id.ToString(CultureInfo.InvariantCulture) + "/" + n.RaftAddress);
        return
        [
            .. CommonArguments(node),
            "--raft_id=" + node.Id.ToString(CultureInfo.InvariantCulture),
            "--raft_cluster=" + string.Join(',', cluster),
        ];
    }

    private List<string> SpareArguments(NodeProcess node, NodeProcess contact) =>
    [
        .. CommonArguments(node),
        "--name=" + node.MemberName,
        "--join=" + contact.HttpAddress,
    ];

    /// <summary>The id stcached derives from a member name (FNV-1a 64); spares need it before they start.</summary>
    public static ulong IdFromName(string name)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return hash == 0 ? 1 : hash;
    }
}
