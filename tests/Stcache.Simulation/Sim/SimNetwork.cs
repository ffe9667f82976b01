using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>Per-run network behaviour, drawn from the seed (swarm testing: every run has its own mix).</summary>
public sealed record NetworkOptions(
    int DelayMinMs,
    int DelayMaxMs,
    int LongDelayPerMillion,
    int LongDelayMaxMs,
    int DropPerMillion,
    int DuplicatePerMillion,
    int UnreachableReportPerMillion)
{
    public static NetworkOptions Perfect { get; } = new(1, 1, 0, 0, 0, 0, 0);

    public static NetworkOptions Random(SplitMix random)
    {
        int min = random.Between(1, 5);
        return new NetworkOptions(
            DelayMinMs: min,
            DelayMaxMs: min + random.Between(0, 30),
            LongDelayPerMillion: random.Chance(1, 2) ? random.Between(0, 50_000) : 0,
            LongDelayMaxMs: random.Between(50, 400),
            DropPerMillion: random.Chance(1, 3) ? 0 : random.Between(0, 150_000),
            DuplicatePerMillion: random.Chance(1, 3) ? 0 : random.Between(0, 50_000),
            UnreachableReportPerMillion: random.Between(0, 500_000));
    }
}

/// <summary>
/// Which directed links are cut. A partition is a set of blocked (from, to) pairs; several can be active and each
/// heals on its own. Messages already in flight are checked again when they arrive.
/// </summary>
public sealed class SimPartitions
{
    private readonly Dictionary<int, HashSet<(NodeId From, NodeId To)>> _active = [];
    private int _nextId = 1;

    public int ActiveCount => _active.Count;

    public bool IsBlocked(NodeId from, NodeId to)
    {
        foreach (var blocked in _active.Values)
        {
            if (blocked.Contains((from, to)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Cuts both directions between the two groups. Returns a handle for <see cref="Heal"/>.</summary>
    public int Split(IReadOnlyCollection<NodeId> groupA, IReadOnlyCollection<NodeId> groupB)
    {
        var blocked = new HashSet<(NodeId, NodeId)>();
        foreach (var a in groupA)
        {
            foreach (var b in groupB)
            {
                blocked.Add((a, b));
                blocked.Add((b, a));
            }
        }

        return Add(blocked);
    }

    /// <summary>Cuts messages from <paramref name="from"/> to <paramref name="to"/> only.</summary>
    public int OneWay(NodeId from, NodeId to) => Add([(from, to)]);

    public void Heal(int handle) => _active.Remove(handle);

    public void HealAll() => _active.Clear();

    public override string ToString() =>
        string.Join("; ", _active.Select(p => $"#{p.Key}: " + string.Join(' ', p.Value.Select(x => $"{x.From}->{x.To}"))));

    private int Add(HashSet<(NodeId, NodeId)> blocked)
    {
        int id = _nextId++;
        _active.Add(id, blocked);
        return id;
    }
}
