using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Resp;

namespace Stcache.Server.Resp;

/// <summary>
/// String data commands over the cache's Set/Delete commands. Plain writes (SET, SETEX, MSET, DEL) are planned
/// without reading state and batch with their neighbours; commands whose effect depends on the current value (INCR,
/// SET … XX|GET, EXPIRE) read it behind a confirmation round and propose a write that compares the key's version,
/// retrying if another write came between.
/// </summary>
internal sealed partial class RespCommands
{
    private const int CompareRetriesMax = 64;

    private void AddDataCommands()
    {
        Add(new RespCommand("GET", 2, CommandKind.Read, ["fast"], 1, 1, 1) { Read = (_, a) => GetReply(a[1]), Group = "string", Summary = "Returns the string value of a key." });
        Add(new RespCommand("MGET", -2, CommandKind.Read, ["fast"], 1, -1, 1) { Read = MGet, Group = "string", Summary = "Atomically returns the string values of one or more keys." });
        Add(new RespCommand("EXISTS", -2, CommandKind.Read, ["fast"], 1, -1, 1) { Read = (_, a) => Integer(a.Skip(1).Count(k => Service.Get(Text(k)) is not null)), Group = "generic", Summary = "Determines whether one or more keys exist." });
        Add(new RespCommand("STRLEN", 2, CommandKind.Read, ["fast"], 1, 1, 1) { Read = (_, a) => Integer(Service.Get(Text(a[1]))?.Value.Length ?? 0), Group = "string" });
        Add(new RespCommand("TYPE", 2, CommandKind.Read, ["fast"], 1, 1, 1) { Read = (_, a) => Service.Get(Text(a[1])) is null ? w => w.SimpleString("none") : w => w.SimpleString("string"), Group = "generic" });
        Add(new RespCommand("TTL", 2, CommandKind.Read, ["fast"], 1, 1, 1) { Read = (_, a) => Ttl(a[1], milliseconds: false), Group = "generic" });
        Add(new RespCommand("PTTL", 2, CommandKind.Read, ["fast"], 1, 1, 1) { Read = (_, a) => Ttl(a[1], milliseconds: true), Group = "generic" });
        Add(new RespCommand("DBSIZE", 1, CommandKind.Read, ["fast"], 0, 0, 0) { Read = (_, _) => Integer(Host.Cache.Count), Group = "server" });

        Add(new RespCommand("SET", -3, CommandKind.Write, ["denyoom"], 1, 1, 1) { Plan = PlanSet, Group = "string", Summary = "Sets the string value of a key." });
        Add(new RespCommand("SETNX", 3, CommandKind.Write, ["denyoom", "fast"], 1, 1, 1) { Plan = (_, a) => PlanOne(CacheCommand.SetIfVersion(Text(a[1]), a[2], 0), r => Integer(r.Succeeded ? 1 : 0)), Group = "string" });
        Add(new RespCommand("SETEX", 4, CommandKind.Write, ["denyoom"], 1, 1, 1) { Plan = (_, a) => PlanSetEx(a, 1000, "setex"), Group = "string" });
        Add(new RespCommand("PSETEX", 4, CommandKind.Write, ["denyoom"], 1, 1, 1) { Plan = (_, a) => PlanSetEx(a, 1, "psetex"), Group = "string" });
        Add(new RespCommand("MSET", -3, CommandKind.Write, ["denyoom"], 1, -1, 2) { Plan = PlanMSet, Group = "string" });
        Add(new RespCommand("DEL", -2, CommandKind.Write, [], 1, -1, 1) { Plan = PlanDelete, Group = "generic" });
        Add(new RespCommand("UNLINK", -2, CommandKind.Write, ["fast"], 1, -1, 1) { Plan = PlanDelete, Group = "generic" });

        Add(new RespCommand("INCR", 2, CommandKind.Other, ["denyoom", "fast"], 1, 1, 1) { Run = (c, a, t) => IncrementAsync(a[1], 1, t), Group = "string" });
        Add(new RespCommand("DECR", 2, CommandKind.Other, ["denyoom", "fast"], 1, 1, 1) { Run = (c, a, t) => IncrementAsync(a[1], -1, t), Group = "string" });
        Add(new RespCommand("INCRBY", 3, CommandKind.Other, ["denyoom", "fast"], 1, 1, 1) { Run = (c, a, t) => IncrementByAsync(a, negate: false, t), Group = "string" });
        Add(new RespCommand("DECRBY", 3, CommandKind.Other, ["denyoom", "fast"], 1, 1, 1) { Run = (c, a, t) => IncrementByAsync(a, negate: true, t), Group = "string" });
        Add(new RespCommand("GETSET", 3, CommandKind.Other, ["denyoom", "fast"], 1, 1, 1) { Run = (c, a, t) => ChangeAsync(a[1], e => (CacheCommand.Set(Text(a[1]), a[2]), Bulk(e)), t), Group = "string" });
        Add(new RespCommand("GETDEL", 2, CommandKind.Other, ["fast"], 1, 1, 1) { Run = (c, a, t) => ChangeAsync(a[1], e => e is null ? (null, Bulk(null)) : (CacheCommand.Delete(Text(a[1])), Bulk(e)), t), Group = "string" });
        Add(new RespCommand("EXPIRE", -3, CommandKind.Other, ["fast"], 1, 1, 1) { Run = (c, a, t) => ExpireAsync(a, 1000, t), Group = "generic" });
        Add(new RespCommand("PEXPIRE", -3, CommandKind.Other, ["fast"], 1, 1, 1) { Run = (c, a, t) => ExpireAsync(a, 1, t), Group = "generic" });
        Add(new RespCommand("PERSIST", 2, CommandKind.Other, ["fast"], 1, 1, 1) { Run = (c, a, t) => ChangeAsync(a[1], e => e is null || e.ExpiresAtUnixMs == 0 ? (null, Integer(0)) : (CacheCommand.Set(Text(a[1]), e.Value), Integer(1)), t), Group = "generic" });
    }

    private static Reply Bulk(CacheEntry? entry)
    {
        if (entry is null)
        {
            return w => w.Null();
        }

        byte[] value = entry.Value;
        return w => w.Bulk(value);
    }

    private Reply GetReply(byte[] key) => Bulk(Service.Get(Text(key)));

    private Reply MGet(RespConnection connection, byte[][] arguments)
    {
        var values = arguments.Skip(1).Select(k => Service.Get(Text(k))?.Value).ToList();
        return w =>
        {
            w.Array(values.Count);
            foreach (byte[]? value in values)
            {
                if (value is null)
                {
                    w.Null();
                }
                else
                {
                    w.Bulk(value);
                }
            }
        };
    }

    private Reply Ttl(byte[] key, bool milliseconds)
    {
        var entry = Service.Get(Text(key));
        if (entry is null)
        {
            return Integer(-2);
        }

        if (entry.ExpiresAtUnixMs == 0)
        {
            return Integer(-1);
        }

        long left = Math.Max(0, entry.ExpiresAtUnixMs - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        return Integer(milliseconds ? left : (left + 500) / 1000);
    }

    private static WritePlan PlanOne(CacheCommand command, Func<ApplyResult, Reply> finish) =>
        new([command], outcomes => finish(outcomes[0].Result));

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>SET key value [NX|XX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [GET]; XX, GET and KEEPTTL read the key
    /// first, so they run on their own (<see cref="SetSlowAsync"/>).</summary>
    private WritePlan PlanSet(RespConnection connection, byte[][] arguments)
    {
        if (!TryParseSet(arguments, out var options, out var error))
        {
            return WritePlan.Refuse(error!);
        }

        if (options.Xx || options.Get || options.KeepTtl)
        {
            // Routed to SetSlowAsync before planning (NeedsRead); kept total for safety.
            return WritePlan.Refuse(Error("SET with XX, GET or KEEPTTL cannot run in a write batch"));
        }

        var command = CacheCommand.Set(Text(arguments[1]), arguments[2]) with { ExpiresAtUnixMs = options.ExpiresAt };
        if (options.Nx)
        {
            command = command with { Compare = CompareKind.Version, ExpectedVersion = 0 };
        }

        return PlanOne(command, r => r.Succeeded ? s_ok : w => w.Null());
    }

    private sealed record SetOptions(bool Nx, bool Xx, bool Get, bool KeepTtl, long ExpiresAt);

    private static bool TryParseSet(byte[][] arguments, out SetOptions options, out Reply? error)
    {
        bool nx = false, xx = false, get = false, keepTtl = false;
        long expiresAt = 0;
        bool expirySet = false;
        options = new SetOptions(false, false, false, false, 0);
        error = null;
        for (int i = 3; i < arguments.Length; i++)
        {
            string option = Upper(arguments[i]);
            switch (option)
            {
                case "NX" when !xx:
                    nx = true;
                    break;
                case "XX" when !nx:
                    xx = true;
                    break;
                case "GET":
                    get = true;
                    break;
                case "KEEPTTL" when !expirySet:
                    keepTtl = true;
                    expirySet = true;
                    break;
                case "EX" or "PX" or "EXAT" or "PXAT" when !expirySet && i + 1 < arguments.Length:
                    if (!RespParser.TryParseInt64(arguments[++i], out long amount))
                    {
                        error = s_notInteger;
                        return false;
                    }

                    if (amount <= 0 || !TryExpiry(option, amount, out expiresAt))
                    {
                        error = Error("invalid expire time in 'set' command");
                        return false;
                    }

                    expirySet = true;
                    break;
                default:
                    error = s_syntaxError;
                    return false;
            }
        }

        options = new SetOptions(nx, xx, get, keepTtl, expiresAt);
        return true;
    }

    private static bool TryExpiry(string unit, long amount, out long expiresAt)
    {
        expiresAt = 0;
        try
        {
            expiresAt = unit switch
            {
                "EX" => checked(Now + (amount * 1000)),
                "PX" => checked(Now + amount),
                "EXAT" => checked(amount * 1000),
                _ => amount,
            };
            return expiresAt > 0;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

    private static WritePlan PlanSetEx(byte[][] arguments, long unitMs, string name)
    {
        if (!RespParser.TryParseInt64(arguments[2], out long amount))
        {
            return WritePlan.Refuse(s_notInteger);
        }

        if (amount <= 0 || !TryExpiry(unitMs == 1000 ? "EX" : "PX", amount, out long expiresAt))
        {
            return WritePlan.Refuse(Error($"invalid expire time in '{name}' command"));
        }

        return PlanOne(CacheCommand.Set(Text(arguments[1]), arguments[3]) with { ExpiresAtUnixMs = expiresAt }, _ => s_ok);
    }

    private static WritePlan PlanMSet(RespConnection connection, byte[][] arguments)
    {
        if (arguments.Length % 2 == 0)
        {
            return WritePlan.Refuse(Error("wrong number of arguments for 'mset' command"));
        }

        var commands = new List<CacheCommand>();
        for (int i = 1; i < arguments.Length; i += 2)
        {
            commands.Add(CacheCommand.Set(Text(arguments[i]), arguments[i + 1]));
        }

        return new WritePlan(commands, _ => s_ok);
    }

    private static WritePlan PlanDelete(RespConnection connection, byte[][] arguments)
    {
        var keys = arguments.Skip(1).Select(Text).Distinct(StringComparer.Ordinal).ToList();
        return new WritePlan([.. keys.Select(CacheCommand.Delete)], outcomes => Integer(outcomes.Count(o => o.Result.PreviousExisted)));
    }

    /// <summary>Whether a SET needs the current value (XX, GET, KEEPTTL) and so cannot be planned blind.</summary>
    public static bool NeedsRead(byte[][] arguments) =>
        Upper(arguments[0]) == "SET" && arguments.Skip(3).Any(a => Upper(a) is "XX" or "GET" or "KEEPTTL");

    public async ValueTask<Reply> SetSlowAsync(byte[][] arguments, CancellationToken cancellationToken)
    {
        if (!TryParseSet(arguments, out var options, out var error))
        {
            return error!;
        }

        string key = Text(arguments[1]);
        return await ChangeAsync(arguments[1], current =>
        {
            Reply answer = options.Get ? Bulk(current) : s_ok;
            if ((options.Xx && current is null) || (options.Nx && current is not null))
            {
                return (null, options.Get ? answer : w => w.Null());
            }

            long expiresAt = options.KeepTtl ? current?.ExpiresAtUnixMs ?? 0 : options.ExpiresAt;
            return (CacheCommand.Set(key, arguments[2]) with { ExpiresAtUnixMs = expiresAt }, answer);
        }, cancellationToken).ConfigureAwait(false);
    }

    private ValueTask<Reply> IncrementByAsync(byte[][] arguments, bool negate, CancellationToken cancellationToken)
    {
        if (!RespParser.TryParseInt64(arguments[2], out long delta))
        {
            return Done(s_notInteger);
        }

        if (negate && delta == long.MinValue)
        {
            return Done(Error("decrement would overflow"));
        }

        return IncrementAsync(arguments[1], negate ? -delta : delta, cancellationToken);
    }

    private ValueTask<Reply> IncrementAsync(byte[] key, long delta, CancellationToken cancellationToken) =>
        ChangeAsync(key, current =>
        {
            long value = 0;
            if (current is not null && !RespParser.TryParseInt64(current.Value, out value))
            {
                return (null, s_notInteger);
            }

            long next;
            try
            {
                next = checked(value + delta);
            }
            catch (OverflowException)
            {
                return (null, Error("increment or decrement would overflow"));
            }

            var command = CacheCommand.Set(Text(key), Encoding.ASCII.GetBytes(next.ToString(CultureInfo.InvariantCulture)))
                with { ExpiresAtUnixMs = current?.ExpiresAtUnixMs ?? 0 };
            return (command, Integer(next));
        }, cancellationToken);

    private ValueTask<Reply> ExpireAsync(byte[][] arguments, long unitMs, CancellationToken cancellationToken)
    {
        if (!RespParser.TryParseInt64(arguments[2], out long amount))
        {
            return Done(s_notInteger);
        }

        bool nx = false, xx = false, gt = false, lt = false;
        foreach (byte[] option in arguments.Skip(3))
        {
            switch (Upper(option))
            {
                case "NX": nx = true; break;
                case "XX": xx = true; break;
                case "GT": gt = true; break;
                case "LT": lt = true; break;
                default: return Done(Error($"Unsupported option {Text(option)}"));
            }
        }

        if (nx && (xx || gt || lt))
        {
            return Done(Error("NX and XX, GT or LT options at the same time are not compatible"));
        }

        if (gt && lt)
        {
            return Done(Error("GT and LT options at the same time are not compatible"));
        }

        long when;
        try
        {
            when = checked(Now + (amount * unitMs));
        }
        catch (OverflowException)
        {
            return Done(Error($"invalid expire time in '{Text(arguments[0]).ToLowerInvariant()}' command"));
        }

        string key = Text(arguments[1]);
        return ChangeAsync(arguments[1], current =>
        {
            if (current is null)
            {
                return (null, Integer(0));
            }

            long ttl = current.ExpiresAtUnixMs;
            if ((nx && ttl != 0) || (xx && ttl == 0) || (gt && (ttl == 0 || when <= ttl)) || (lt && ttl != 0 && when >= ttl))
            {
                return (null, Integer(0));
            }

            var command = when <= Now ? CacheCommand.Delete(key) : CacheCommand.Set(key, current.Value) with { ExpiresAtUnixMs = when };
            return (command, Integer(1));
        }, cancellationToken);
    }

    /// <summary>
    /// Read-modify-write of one key: read it behind a confirmation round, let <paramref name="decide"/> choose a
    /// command (or answer without one), and propose it on condition that the key's version is still the one read.
    /// A write that slipped in between fails the compare, and the whole step is retried.
    /// </summary>
    private async ValueTask<Reply> ChangeAsync(byte[] keyBytes, Func<CacheEntry?, (CacheCommand? Command, Reply Answer)> decide, CancellationToken cancellationToken)
    {
        string key = Text(keyBytes);

        // Read-modify-writes of one key from this node's clients take turns, so they do not fail each other's
        // compares; only writes through other nodes can still make an attempt retry.
        var turn = _keyTurns[(int)((uint)StringComparer.Ordinal.GetHashCode(key) % (uint)_keyTurns.Length)];
        await turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await ChangeInTurnAsync(key, decide, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            turn.Release();
        }
    }

    private readonly SemaphoreSlim[] _keyTurns = [.. Enumerable.Range(0, 256).Select(_ => new SemaphoreSlim(1, 1))];

    private async ValueTask<Reply> ChangeInTurnAsync(string key, Func<CacheEntry?, (CacheCommand? Command, Reply Answer)> decide, CancellationToken cancellationToken)
    {
        for (int attempt = 0; attempt < CompareRetriesMax; attempt++)
        {
            var barrier = await Service.ReadBarrierAsync(ReadConsistency.Linearizable, cancellationToken).ConfigureAwait(false);
            if (!barrier.Succeeded)
            {
                return ReadFailure(barrier);
            }

            // The compare is on the stored entry, expired or not: the state machine has no clock.
            ulong version = Host.Cache.TryGet(key, out var stored) ? stored.Version : 0;
            var current = Service.Get(key);
            var (command, answer) = decide(current);
            if (command is null)
            {
                return answer;
            }

            var outcome = await Service.WriteAsync(command with { Compare = CompareKind.Version, ExpectedVersion = version }, cancellationToken).ConfigureAwait(false);
            if (outcome.Status != WriteStatus.Applied)
            {
                return WriteFailure(outcome);
            }

            if (outcome.Result.Status == ApplyStatus.CompareFailed)
            {
                continue;
            }

            return answer;
        }

        return w => w.CodedError("TRYAGAIN the key changed on every attempt; not applied");
    }

    /// <summary>Runs commands queued by MULTI, in order, and collects their replies for EXEC.</summary>
    private async Task<List<Reply>> ExecuteQueuedAsync(RespConnection connection, List<byte[][]> queued, CancellationToken cancellationToken)
    {
        var replies = new List<Reply>(queued.Count);
        foreach (byte[][] arguments in queued)
        {
            var command = Find(Upper(arguments[0]))!;
            replies.Add(await RunOneAsync(connection, command, arguments, cancellationToken).ConfigureAwait(false));
        }

        return replies;
    }

    public async ValueTask<Reply> RunOneAsync(RespConnection connection, RespCommand command, byte[][] arguments, CancellationToken cancellationToken)
    {
        switch (command.Kind)
        {
            case CommandKind.Write when NeedsRead(arguments):
                return await SetSlowAsync(arguments, cancellationToken).ConfigureAwait(false);
            case CommandKind.Write:
                return (await connection.RunPlansAsync([command.Plan!(connection, arguments)], cancellationToken).ConfigureAwait(false))[0];
            case CommandKind.Read:
                var barrier = await Service.ReadBarrierAsync(connection.ReadConsistency, cancellationToken).ConfigureAwait(false);
                return barrier.Succeeded ? command.Read!(connection, arguments) : ReadFailure(barrier);
            default:
                return await command.Run!(connection, arguments, cancellationToken).ConfigureAwait(false);
        }
    }
}
