using System.Reflection;
using Microsoft.Extensions.Logging;

namespace Stcache.Integration.Tests;

/// <summary>
/// Every log event id lies in its area's range, and no two events share an id, so an operator can filter and
/// alert on an id knowing which component logged it. The ranges are the table in docs/OPERATIONS.md ("Logging").
/// </summary>
public sealed class EventIdTests
{
    // Namespace prefix (the longest match wins) → the area's range, inclusive. Keep in step with docs/OPERATIONS.md.
    private static readonly (string Namespace, string Area, int First, int Last)[] s_areas =
    [
        ("Stcache.Raft", "Raft core", 100, 999),
        ("Stcache.Node", "Node driver", 1000, 1099),
        ("Stcache.Server", "Server shell", 1100, 1299),
        ("Stcache.Server.Resp", "RESP server", 1300, 1399),
        ("Stcache.Cache", "Cache", 1400, 1499),
        ("Stcache.Resp", "RESP protocol", 1500, 1599),
        ("Stcache.Cli", "CLI", 1600, 1699),
        ("Stcache.Storage", "Storage", 2000, 2999),
        ("Stcache.Transport", "Transport", 3000, 3999),
    ];

    private static readonly Assembly[] s_assemblies =
    [
        typeof(Stcache.Raft.RaftNode).Assembly,
        typeof(NodeDriver).Assembly,
        typeof(Stcache.Server.RaftHost).Assembly,
        typeof(Stcache.Cache.CacheStateMachine).Assembly,
        typeof(Stcache.Resp.RespParser).Assembly,
        typeof(Stcache.Storage.WriteAheadLog).Assembly,
        typeof(Stcache.Transport.PeerTransport).Assembly,
    ];

    [Fact]
    public void EventIdsLieInTheirAreaAndAreUnique()
    {
        var events = LoggedEvents().ToList();
        Assert.True(events.Count > 50, $"only {events.Count} [LoggerMessage] methods found: is the reflection still right?");

        var problems = new List<string>();
        foreach (var (id, method) in events)
        {
            string ns = method.DeclaringType!.Namespace ?? string.Empty;
            var area = s_areas
                .Where(a => ns == a.Namespace || ns.StartsWith(a.Namespace + ".", StringComparison.Ordinal))
                .OrderByDescending(a => a.Namespace.Length)
                .Select(a => (a.Area, a.First, a.Last))
                .FirstOrDefault();
            if (area.Area is null)
            {
                problems.Add($"{Name(method)}: namespace {ns} has no event-id range");
            }
            else if (id < area.First || id > area.Last)
            {
                problems.Add($"{Name(method)}: id {id} is outside {area.Area}'s range {area.First}-{area.Last}");
            }
        }

        foreach (var group in events.GroupBy(e => e.Id).Where(g => g.Count() > 1))
        {
            problems.Add($"id {group.Key} is used by {string.Join(", ", group.Select(e => Name(e.Method)))}");
        }

        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void AreaRangesDoNotOverlap()
    {
        var sorted = s_areas.OrderBy(a => a.First).ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            Assert.True(sorted[i].First > sorted[i - 1].Last, $"{sorted[i - 1].Area} and {sorted[i].Area} overlap");
        }
    }

    private static IEnumerable<(int Id, MethodInfo Method)> LoggedEvents()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance |
            BindingFlags.DeclaredOnly;
        foreach (var assembly in s_assemblies)
        {
            foreach (var type in assembly.GetTypes())
            {
                foreach (var method in type.GetMethods(all))
                {
                    if (method.GetCustomAttribute<LoggerMessageAttribute>() is { } attribute)
                    {
                        yield return (attribute.EventId, method);
                    }
                }
            }
        }
    }

    private static string Name(MethodInfo method) => $"{method.DeclaringType!.FullName}.{method.Name}";
}
