using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Stcache.Faults.Tests.Harness;

namespace Stcache.Faults.Tests.Workload;

/// <summary>
/// Concurrent Redis-protocol clients, each on one connection to one node at a time (it moves to another node now
/// and then, and after every connection error): GET, SET, <c>SET … GET</c>, DEL and INCR on the two keys of a few
/// groups, MULTI/EXEC transactions over both keys of a group, and INCRs of one counter that must lose no
/// acknowledged increment. Every operation is recorded with its outcome.
/// </summary>
public sealed class RespWorkload(WorkloadOptions options, Func<IReadOnlyList<NodeProcess>> targets) : IFaultWorkload
{
    public const string CounterKey = "resp-incr-total";

    private readonly ConcurrentQueue<RespRecordedOp> _ops = new();
    private readonly ConcurrentQueue<long> _counterAcknowledged = new();
    private readonly ConcurrentDictionary<string, bool> _groupsUsed = new();
    private int _counterUnknown;
    private int _epoch;

    public IReadOnlyCollection<RespRecordedOp> Operations => _ops;

    public int OperationCount => _ops.Count;

    /// <summary>The values the acknowledged INCRs of <see cref="CounterKey"/> answered.</summary>
    public IReadOnlyCollection<long> CounterAcknowledged => _counterAcknowledged;

    /// <summary>INCRs of <see cref="CounterKey"/> that may or may not have been applied.</summary>
    public int CounterUnknown => Volatile.Read(ref _counterUnknown);

    public IReadOnlyCollection<string> GroupsUsed => [.. _groupsUsed.Keys];

    /// <summary>New groups every fault cycle keep each group's history short enough to check (see KvWorkload).</summary>
    public void NextEpoch() => Interlocked.Increment(ref _epoch);

    public int Epoch => Volatile.Read(ref _epoch);

    public static int EpochOf(string group) =>
        int.Parse(group.AsSpan(4, group.IndexOf('-', StringComparison.Ordinal) - 4), CultureInfo.InvariantCulture);

    public static string KeyOf(string group, int slot) => group + (slot == 0 ? ":a" : ":b");

    private static string GroupOf(int epoch, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"resp{epoch}-{index}");

    public async Task RunAsync(CancellationToken stop)
    {
        var clients = Enumerable.Range(1, options.Clients).Select(c => Task.Run(() => ClientLoopAsync(c, stop), CancellationToken.None));
        await Task.WhenAll(clients);
    }

    /// <summary>Reads both keys of a group through a node on a fresh connection, recorded like any other operation.</summary>
    public async Task<RespRecordedOp> ReadGroupAsync(NodeProcess node, string group)
    {
        RespClient? connection = null;
        try
        {
            return await ExecuteAsync(0, node, () => connection, c => connection = c, group, [new RespStep(RespStepKind.Get, 0), new RespStep(RespStepKind.Get, 1)], transaction: true);
        }
        finally
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }
        }
    }

    /// <summary>A linearizable GET of the counter through a node; null when the node did not answer.</summary>
    public async Task<RespReply?> ReadCounterAsync(NodeProcess node)
    {
        using var timeout = new CancellationTokenSource(options.RequestTimeout);
        try
        {
            await using var client = await RespClient.ConnectAsync(node.RespPort, timeout.Token);
            var reply = await client.ExecuteAsync(["GET", CounterKey], timeout.Token);
            return reply.IsError ? null : reply;
        }
        catch (Exception e) when (e is RespConnectException or IOException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
            return null;
        }
    }

    private async Task ClientLoopAsync(int client, CancellationToken stop)
    {
        var random = new Random((options.Seed * 37) + client);
        RespClient? connection = null;
        NodeProcess? node = null;
        long sequence = 0;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var members = targets();
                if (members.Count == 0)
                {
                    await Task.Delay(50, CancellationToken.None);
                    continue;
                }

                // Move to another node after an error, when the node left the cluster, and now and then anyway.
                if (connection is null || node is null || !members.Contains(node) || random.Next(20) == 0)
                {
                    if (connection is not null)
                    {
                        await connection.DisposeAsync();
                        connection = null;
                    }

                    node = members[random.Next(members.Count)];
                }

                string group = GroupOf(Epoch, random.Next(options.Keys));
                long value = (client * 1_000_000_000L) + (++sequence * 1000);
                int roll = random.Next(100);
                int slot = random.Next(2);
                RespStep[] steps;
                bool transaction = false;
                if (roll < 8)
                {
                    await IncrementCounterAsync(node, () => connection, c => connection = c);
                    await ThinkAsync();
                    continue;
                }
                else if (roll < 36)
                {
                    steps = [new RespStep(RespStepKind.Get, slot)];
                }
                else if (roll < 48)
                {
                    steps = [new RespStep(RespStepKind.Set, slot, value)];
                }
                else if (roll < 58)
                {
                    steps = [new RespStep(RespStepKind.SetGet, slot, value)];
                }
                else if (roll < 65)
                {
                    steps = [new RespStep(RespStepKind.Del, slot)];
                }
                else if (roll < 80)
                {
                    steps = [new RespStep(RespStepKind.Incr, slot)];
                }
                else
                {
                    transaction = true;
                    steps = new RespStep[random.Next(2, 5)];
                    for (int i = 0; i < steps.Length; i++)
                    {
                        var kind = (RespStepKind)random.Next(5);
                        steps[i] = new RespStep(kind, random.Next(2), value + i);
                    }
                }

                _groupsUsed[group] = true;
                var op = await ExecuteAsync(client, node, () => connection, c => connection = c, group, steps, transaction);
                _ops.Enqueue(op);
                await ThinkAsync();
            }
        }
        finally
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }
        }
    }

    private Task ThinkAsync() => options.ThinkTime > TimeSpan.Zero ? Task.Delay(options.ThinkTime, CancellationToken.None) : Task.CompletedTask;

    private async Task IncrementCounterAsync(NodeProcess node, Func<RespClient?> get, Action<RespClient?> set)
    {
        var (outcome, replies, _) = await SendAsync(node, get, set, [["INCR", CounterKey]], write: true);
        if (outcome == OpOutcome.Ok && replies![0] is { Type: ':' } reply)
        {
            _counterAcknowledged.Enqueue(long.Parse(reply.Text!, CultureInfo.InvariantCulture));
        }
        else if (outcome == OpOutcome.Ok)
        {
            // An answer that is neither a number nor a known "not applied" error: count it as maybe applied and
            // let the distinctness check below show it.
            _counterAcknowledged.Enqueue(-1);
        }
        else if (outcome == OpOutcome.Unknown)
        {
            Interlocked.Increment(ref _counterUnknown);
        }
    }

    private async Task<RespRecordedOp> ExecuteAsync(int client, NodeProcess node, Func<RespClient?> get, Action<RespClient?> set, string group, RespStep[] steps, bool transaction)
    {
        var commands = new List<string[]>();
        if (transaction)
        {
            commands.Add(["MULTI"]);
        }

        foreach (var step in steps)
        {
            string key = KeyOf(group, step.Slot);
            string value = step.Value.ToString(CultureInfo.InvariantCulture);
            commands.Add(step.Kind switch
            {
                RespStepKind.Get => ["GET", key],
                RespStepKind.Set => ["SET", key, value],
                RespStepKind.SetGet => ["SET", key, value, "GET"],
                RespStepKind.Del => ["DEL", key],
                _ => ["INCR", key],
            });
        }

        if (transaction)
        {
            commands.Add(["EXEC"]);
        }

        bool write = steps.Any(s => s.IsWrite);
        long invoke = Stopwatch.GetTimestamp();
        var (outcome, replies, detail) = await SendAsync(node, get, set, commands, write);
        long complete = Stopwatch.GetTimestamp();
        IReadOnlyList<RespReply>? results = null;
        if (outcome == OpOutcome.Ok)
        {
            if (!transaction)
            {
                results = replies;
            }
            else if (replies![^1] is { Type: '*', Items: { } items } && items.Count == steps.Length)
            {
                results = items;
            }
            else
            {
                // MULTI or a QUEUED answered something unexpected, or EXEC answered something that is not one
                // reply per command: record the answer as is; no model explains it.
                results = [.. steps.Select(_ => replies[^1])];
                detail = "unexpected transaction replies: " + string.Join(", ", replies);
            }
        }

        return new RespRecordedOp(client, group, steps, transaction, node.MemberName, invoke, complete, outcome, results, detail);
    }

    /// <summary>
    /// Sends commands on the client's connection (connecting first if needed) and classifies the outcome: a refused
    /// connection or a "not applied" error (CLUSTERDOWN, TRYAGAIN, READONLY, EXECABORT) is a failure; a timeout, a
    /// broken connection or UNCERTAIN leaves a write unknown (a read that got no answer had no effect: failed).
    /// </summary>
    private async Task<(OpOutcome Outcome, RespReply[]? Replies, string Detail)> SendAsync(NodeProcess node, Func<RespClient?> get, Action<RespClient?> set, List<string[]> commands, bool write)
    {
        using var timeout = new CancellationTokenSource(options.RequestTimeout);
        var connection = get();
        try
        {
            if (connection is null)
            {
                connection = await RespClient.ConnectAsync(node.RespPort, timeout.Token);
                set(connection);
            }

            var replies = await connection.ExecuteAsync(commands, timeout.Token);
            var error = replies.FirstOrDefault(r => r.IsError) ?? (replies[^1] is { Type: '*', Items: { } items } ? items.FirstOrDefault(r => r.IsError) : null);
            string detail = error is null ? "ok" : error.Text ?? string.Empty;
            return error?.ErrorCode switch
            {
                null => (OpOutcome.Ok, replies, detail),
                "CLUSTERDOWN" or "TRYAGAIN" or "READONLY" or "EXECABORT" => (OpOutcome.Fail, null, detail),
                "UNCERTAIN" => (write ? OpOutcome.Unknown : OpOutcome.Fail, null, detail),
                _ => (OpOutcome.Ok, replies, detail),
            };
        }
        catch (RespConnectException e)
        {
            return (OpOutcome.Fail, null, e.Message);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or OperationCanceledException or FormatException)
        {
            if (connection is not null)
            {
                await connection.DisposeAsync();
            }

            set(null);
            return (write ? OpOutcome.Unknown : OpOutcome.Fail, null, e.GetType().Name + ": " + e.Message);
        }
    }
}
