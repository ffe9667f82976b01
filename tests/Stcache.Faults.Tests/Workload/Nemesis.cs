using System.Diagnostics;
using System.Globalization;
using Stcache.Faults.Tests.Harness;

namespace Stcache.Faults.Tests.Workload;

public enum FaultKind
{
    KillFollower,
    KillLeader,
    PauseLeader,
    PauseFollower,
    IsolateLeader,
    PartitionMinority,
    LeaderCannotSend,
    LeaderCannotReceive,
    SlowLinks,
    RefuseNode,
    RestartAll,
    WipeAndRejoin,
    ReplaceMember,
}

/// <summary>
/// Injects faults on a schedule: each fault holds for a while, then everything heals and the cluster must elect
/// a leader again before the next fault. Keeps the current member list up to date across membership changes.
/// </summary>
public sealed class Nemesis(StcacheCluster cluster, Random random, Action<string> log, Action? cycleDone = null)
{
    private static readonly TimeSpan s_recoveryTimeout = TimeSpan.FromSeconds(30);
    private readonly Lock _lock = new();
    private readonly List<NodeProcess> _members = [.. cluster.Founders];
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public List<string> Injected { get; } = [];

    public IReadOnlyList<NodeProcess> Members
    {
        get
        {
            lock (_lock)
            {
                return [.. _members];
            }
        }
    }

    public async Task RunAsync(IReadOnlyList<FaultKind> kinds, TimeSpan duration, TimeSpan hold, TimeSpan quiet)
    {
        var queue = new Queue<FaultKind>();
        while (_clock.Elapsed < duration)
        {
            if (queue.Count == 0)
            {
                foreach (var kind in kinds.OrderBy(_ => random.Next()))
                {
                    queue.Enqueue(kind);
                }
            }

            var next = queue.Dequeue();
            await InjectAndHealAsync(next, hold);
            cycleDone?.Invoke();
            await Task.Delay(quiet);
        }
    }

    public async Task InjectAndHealAsync(FaultKind kind, TimeSpan hold)
    {
        var members = Members;
        var leader = await CurrentLeaderAsync(members);
        var followers = members.Where(m => m != leader).ToList();
        var anyFollower = followers[random.Next(followers.Count)];
        string description;
        switch (kind)
        {
            case FaultKind.KillFollower:
                anyFollower.Kill();
                description = $"kill -9 follower {anyFollower.MemberName}";
                break;
            case FaultKind.KillLeader:
                leader.Kill();
                description = $"kill -9 leader {leader.MemberName}";
                break;
            case FaultKind.PauseLeader:
                leader.Pause();
                hold = Max(hold, cluster.Options.ElectionTimeout * 4);
                description = $"SIGSTOP leader {leader.MemberName}";
                break;
            case FaultKind.PauseFollower:
                anyFollower.Pause();
                hold = Max(hold, cluster.Options.ElectionTimeout * 4);
                description = $"SIGSTOP follower {anyFollower.MemberName}";
                break;
            case FaultKind.IsolateLeader:
                cluster.Isolate(leader);
                description = $"isolate leader {leader.MemberName}";
                break;
            case FaultKind.PartitionMinority:
                {
                    var minority = members.OrderBy(_ => random.Next()).Take((members.Count - 1) / 2).ToList();
                    cluster.Partition(minority);
                    description = $"partition [{Names(minority)}] | [{Names(members.Except(minority))}]";
                    break;
                }

            case FaultKind.LeaderCannotSend:
                cluster.SetLinks((a, b) => a == leader && members.Contains(b), LinkMode.Blackhole);
                description = $"one-way: leader {leader.MemberName} -> others cut";
                break;
            case FaultKind.LeaderCannotReceive:
                cluster.SetLinks((a, b) => b == leader && members.Contains(a), LinkMode.Blackhole);
                description = $"one-way: others -> leader {leader.MemberName} cut";
                break;
            case FaultKind.SlowLinks:
                {
                    var delay = TimeSpan.FromMilliseconds(random.Next(20, 120));
                    cluster.DelayAll(delay);
                    description = $"delay every link by {delay.TotalMilliseconds}ms";
                    break;
                }

            case FaultKind.RefuseNode:
                cluster.SetLinks((a, b) => a == anyFollower || b == anyFollower, LinkMode.Refuse);
                description = $"reset all links of {anyFollower.MemberName}";
                break;
            case FaultKind.RestartAll:
                foreach (var member in members)
                {
                    member.Kill();
                }

                hold = TimeSpan.FromMilliseconds(200);
                description = "kill -9 every member";
                break;
            case FaultKind.WipeAndRejoin:
                if (anyFollower.Incarnation >= StcacheCluster.IncarnationsMax)
                {
                    return;
                }

                description = await WipeAndRejoinAsync(anyFollower, members);
                hold = TimeSpan.Zero;
                break;
            case FaultKind.ReplaceMember:
                {
                    var spare = cluster.Nodes.FirstOrDefault(n => !members.Contains(n) && n.Incarnation < StcacheCluster.IncarnationsMax);
                    if (spare is null)
                    {
                        return;
                    }

                    description = await ReplaceAsync(anyFollower, spare, members);
                    hold = TimeSpan.Zero;
                    break;
                }

            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }

        Record(description);
        if (hold > TimeSpan.Zero)
        {
            await Task.Delay(hold);
        }

        await HealAsync();
    }

    public async Task HealAsync()
    {
        var members = Members;
        cluster.HealAll(members);
        await cluster.WaitForLeaderAsync(s_recoveryTimeout, members);
    }

    private async Task<string> WipeAndRejoinAsync(NodeProcess node, IReadOnlyList<NodeProcess> members)
    {
        var others = members.Where(m => m != node).ToList();
        string old = node.ToString();
        node.Kill();
        await cluster.RemoveMemberAsync(node, others, s_recoveryTimeout);
        SetMembers(others);
        await cluster.RejoinWipedAsync(node, others, s_recoveryTimeout);
        SetMembers([.. others, node]);
        return $"wipe {old}: removed, data deleted, back as new member {node}";
    }

    private async Task<string> ReplaceAsync(NodeProcess leaving, NodeProcess spare, IReadOnlyList<NodeProcess> members)
    {
        if (spare.Starts > 0)
        {
            // A slot that was removed before comes back only as a new member.
            spare.WipeDataDirectory();
            spare.BecomeNewMember(StcacheCluster.IdFromName(NodeProcess.IncarnationName(spare.Name, spare.Incarnation + 1)));
        }

        await cluster.AddSpareAsync(spare, members, s_recoveryTimeout);
        SetMembers([.. members, spare]);
        var remaining = members.Where(m => m != leaving).Append(spare).ToList();
        await cluster.RemoveMemberAsync(leaving, remaining, s_recoveryTimeout);
        SetMembers(remaining);
        leaving.Kill();
        return $"add {spare} then remove {leaving}";
    }

    private void SetMembers(IEnumerable<NodeProcess> members)
    {
        lock (_lock)
        {
            _members.Clear();
            _members.AddRange(members);
        }
    }

    private async Task<NodeProcess> CurrentLeaderAsync(IReadOnlyList<NodeProcess> members)
    {
        try
        {
            return await cluster.WaitForLeaderAsync(s_recoveryTimeout, members);
        }
        catch (TimeoutException e)
        {
            log("no agreed leader before a fault: " + e.Message);
            throw;
        }
    }

    private void Record(string description)
    {
        string line = string.Create(CultureInfo.InvariantCulture, $"t+{_clock.Elapsed.TotalSeconds:F1}s {description}");
        Injected.Add(line);
        log("fault: " + line);
    }

    private static string Names(IEnumerable<NodeProcess> nodes) => string.Join(',', nodes.Select(n => n.MemberName));

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
