using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Resp;

namespace Stcache.Server.Resp;

/// <summary>Server, transaction and pub/sub commands.</summary>
internal sealed partial class RespCommands
{
    private static readonly string s_runId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(20));

    private void AddServerCommands()
    {
        Add(new RespCommand("COMMAND", -1, CommandKind.Other, ["loading", "stale"], 0, 0, 0) { Run = Command, Group = "server", Summary = "Returns detailed information about all commands." });
        Add(new RespCommand("CONFIG", -2, CommandKind.Other, ["admin", "noscript", "loading", "stale"], 0, 0, 0) { Run = Config, Group = "server", Summary = "A container for server configuration commands." });
        Add(new RespCommand("INFO", -1, CommandKind.Other, ["loading", "stale"], 0, 0, 0) { Run = Info, Group = "server", Summary = "Returns information and statistics about the server." });
        Add(new RespCommand("TIME", 1, CommandKind.Other, ["loading", "stale", "fast"], 0, 0, 0) { Run = Time, Group = "server", Summary = "Returns the server time." });
        Add(new RespCommand("ROLE", 1, CommandKind.Other, ["noscript", "loading", "stale", "fast"], 0, 0, 0) { Run = Role, Group = "server", Summary = "Returns the replication role." });
        Add(new RespCommand("WAIT", 3, CommandKind.Other, [], 0, 0, 0) { Run = Wait, Group = "generic", Summary = "Returns how many replicas hold the connection's last write." });
        Add(new RespCommand("LASTSAVE", 1, CommandKind.Other, ["loading", "stale", "fast"], 0, 0, 0) { Run = (_, _, _) => Done(Integer(_server.StartedAt.ToUnixTimeSeconds())), Group = "server", Summary = "Returns the Unix timestamp of the last save." });
        Add(new RespCommand("SCRIPT", -2, CommandKind.Other, ["noscript"], 0, 0, 0) { Run = (_, a, _) => Done(Flush(a, "SCRIPT")), Group = "scripting", Summary = "SCRIPT FLUSH only: there are no scripts." });
        Add(new RespCommand("FUNCTION", -2, CommandKind.Other, ["noscript"], 0, 0, 0) { Run = (_, a, _) => Done(Flush(a, "FUNCTION")), Group = "scripting", Summary = "FUNCTION FLUSH only: there are no functions." });
        foreach (string name in new[] { "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO" })
        {
            Add(new RespCommand(name, -3, CommandKind.Other, ["noscript"], 0, 0, 0) { Run = (_, _, _) => Done(Error("scripting is not supported by stcache: every command is replicated through Raft on its own; use MULTI/EXEC")), Group = "scripting" });
        }

        Add(new RespCommand("CLUSTER", -2, CommandKind.Other, ["stale"], 0, 0, 0) { Run = (_, _, _) => Done(Error("This instance has cluster support disabled")), Group = "cluster" });
        Add(new RespCommand("MULTI", 1, CommandKind.Other, ["noscript", "loading", "stale", "fast"], 0, 0, 0) { Run = Multi, Group = "transactions", Summary = "Starts a transaction." });
        Add(new RespCommand("EXEC", 1, CommandKind.Other, ["noscript", "loading", "stale"], 0, 0, 0) { Run = Exec, Group = "transactions", Summary = "Executes all commands in a transaction." });
        Add(new RespCommand("DISCARD", 1, CommandKind.Other, ["noscript", "loading", "stale", "fast"], 0, 0, 0) { Run = Discard, Group = "transactions", Summary = "Discards a transaction." });
        Add(new RespCommand("WATCH", -2, CommandKind.Other, ["noscript", "loading", "stale", "fast"], 1, -1, 1) { Run = Watch, Group = "transactions", Summary = "Monitors changes to keys to determine the execution of a transaction." });
        Add(new RespCommand("UNWATCH", 1, CommandKind.Other, ["noscript", "loading", "stale", "fast"], 0, 0, 0) { Run = (c, _, _) => { c.Watched.Clear(); return Done(s_ok); }, Group = "transactions", Summary = "Forgets about watched keys." });
        Add(new RespCommand("SUBSCRIBE", -2, CommandKind.Other, ["pubsub", "noscript", "loading", "stale"], 0, 0, 0) { Run = (c, a, _) => Done(Subscribe(c, a, pattern: false)), Group = "pubsub", Summary = "Listens for messages published to channels (on this node)." });
        Add(new RespCommand("PSUBSCRIBE", -2, CommandKind.Other, ["pubsub", "noscript", "loading", "stale"], 0, 0, 0) { Run = (c, a, _) => Done(Subscribe(c, a, pattern: true)), Group = "pubsub", Summary = "Listens for messages published to channels that match patterns (on this node)." });
        Add(new RespCommand("UNSUBSCRIBE", -1, CommandKind.Other, ["pubsub", "noscript", "loading", "stale"], 0, 0, 0) { Run = (c, a, _) => Done(Unsubscribe(c, a, pattern: false)), Group = "pubsub" });
        Add(new RespCommand("PUNSUBSCRIBE", -1, CommandKind.Other, ["pubsub", "noscript", "loading", "stale"], 0, 0, 0) { Run = (c, a, _) => Done(Unsubscribe(c, a, pattern: true)), Group = "pubsub" });
        Add(new RespCommand("PUBLISH", 3, CommandKind.Other, ["pubsub", "loading", "stale", "fast"], 0, 0, 0) { Run = (_, a, _) => Done(Integer(_server.Publish(Text(a[1]), a[2]))), Group = "pubsub", Summary = "Posts a message to this node's subscribers of a channel." });
    }

    private static Reply Flush(byte[][] arguments, string container)
    {
        string sub = Upper(arguments[1]);
        if (sub == "FLUSH" && (arguments.Length == 2 || (arguments.Length == 3 && Upper(arguments[2]) is "SYNC" or "ASYNC")))
        {
            return s_ok;
        }

        return Error($"{container} {sub} is not supported by stcache (there are no scripts or functions); only {container} FLUSH is accepted");
    }

    // ---- COMMAND -----------------------------------------------------------------------------------------------------

    private ValueTask<Reply> Command(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (arguments.Length == 1)
        {
            var all = All.ToList();
            return Done(w =>
            {
                w.Array(all.Count);
                foreach (var command in all)
                {
                    WriteCommandInfo(w, command);
                }
            });
        }

        string sub = Upper(arguments[1]);
        switch (sub)
        {
            case "COUNT" when arguments.Length == 2:
                return Done(Integer(_table.Count + _data.Count));
            case "LIST":
                {
                    var names = All.Select(c => c.Name.ToLowerInvariant()).ToList();
                    return Done(w =>
                    {
                        w.Array(names.Count);
                        foreach (string name in names)
                        {
                            w.Bulk(name);
                        }
                    });
                }

            case "INFO":
                {
                    List<RespCommand?> wanted = arguments.Length == 2 ? [.. All] : [.. arguments.Skip(2).Select(a => FindAny(Upper(a)))];
                    return Done(w =>
                    {
                        w.Array(wanted.Count);
                        foreach (var command in wanted)
                        {
                            if (command is null)
                            {
                                w.NullArray();
                            }
                            else
                            {
                                WriteCommandInfo(w, command);
                            }
                        }
                    });
                }

            case "DOCS":
                {
                    var wanted = (arguments.Length == 2 ? All : arguments.Skip(2).Select(a => FindAny(Upper(a))).OfType<RespCommand>()).ToList();
                    return Done(w =>
                    {
                        w.Map(wanted.Count);
                        foreach (var command in wanted)
                        {
                            w.Bulk(command.Name.ToLowerInvariant());
                            w.Map(3);
                            w.Bulk("summary");
                            w.Bulk(command.Summary.Length > 0 ? command.Summary : command.Name);
                            w.Bulk("since");
                            w.Bulk("1.0.0");
                            w.Bulk("group");
                            w.Bulk(command.Group);
                        }
                    });
                }

            case "GETKEYS" when arguments.Length >= 3:
                {
                    var command = FindAny(Upper(arguments[2]));
                    if (command is null || command.FirstKey == 0)
                    {
                        return Done(Error("The command has no key arguments"));
                    }

                    var keys = new List<byte[]>();
                    var commandArguments = arguments[2..];
                    int last = command.LastKey < 0 ? commandArguments.Length + command.LastKey : command.LastKey;
                    for (int i = command.FirstKey; i <= last && i < commandArguments.Length; i += Math.Max(command.Step, 1))
                    {
                        keys.Add(commandArguments[i]);
                    }

                    return Done(w =>
                    {
                        w.Array(keys.Count);
                        foreach (byte[] key in keys)
                        {
                            w.Bulk(key);
                        }
                    });
                }

            default:
                return Done(UnknownSubcommand(arguments[1], "COMMAND"));
        }
    }

    private static void WriteCommandInfo(RespWriter w, RespCommand command)
    {
        w.Array(10);
        w.Bulk(command.Name.ToLowerInvariant());
        w.Integer(command.Arity);
        var flags = command.Kind switch
        {
            CommandKind.Write => command.Flags.Prepend("write"),
            CommandKind.Read => command.Flags.Prepend("readonly"),
            _ => command.Flags,
        };
        var list = flags.Distinct().ToList();
        w.Set(list.Count);
        foreach (string flag in list)
        {
            w.SimpleString(flag);
        }

        w.Integer(command.FirstKey);
        w.Integer(command.LastKey);
        w.Integer(command.Step);
        w.Set(1);
        w.SimpleString("@" + command.Group);
        w.Array(0);
        w.Array(0);
        w.Array(0);
    }

    // ---- CONFIG --------------------------------------------------------------------------------------------------------

    private List<(string Name, string Value)> ConfigValues()
    {
        var options = _server.Options;
        string bind = options.RespAddress is { } resp ? CommandLine.NormalizeAddress(resp)[..CommandLine.NormalizeAddress(resp).LastIndexOf(':')] : "127.0.0.1";
        return
        [
            ("maxmemory", Host.Cache.MaxMemoryBytes.ToString(CultureInfo.InvariantCulture)),
            ("maxmemory-policy", Host.Cache.Policy.Name()),
            ("databases", "1"),
            ("save", string.Empty),
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("timeout", ((long)options.RespIdleTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture)),
            ("maxclients", options.RespClientsMax.ToString(CultureInfo.InvariantCulture)),
            ("proto-max-bulk-len", options.ValueBytesMax.ToString(CultureInfo.InvariantCulture)),
            ("replica-read-only", "yes"),
            ("slave-read-only", "yes"),
            ("cluster-enabled", "no"),
            ("port", _server.Port.ToString(CultureInfo.InvariantCulture)),
            ("bind", bind),
            ("requirepass", string.Empty),
        ];
    }

    private ValueTask<Reply> Config(RespConnection connection, byte[][] arguments, CancellationToken cancellationToken)
    {
        string sub = Upper(arguments[1]);
        switch (sub)
        {
            case "GET" when arguments.Length >= 3:
                {
                    var patterns = arguments.Skip(2).Select(a => Text(a).ToLowerInvariant()).ToList();
                    var matches = ConfigValues().Where(v => patterns.Any(p => Glob.IsMatch(p, v.Name))).ToList();
                    return Done(w =>
                    {
                        w.Map(matches.Count);
                        foreach (var (name, value) in matches)
                        {
                            w.Bulk(name);
                            w.Bulk(value);
                        }
                    });
                }

            case "SET" when arguments.Length >= 4:
                return ConfigSetAsync(arguments, cancellationToken);
            case "RESETSTAT" when arguments.Length == 2:
                return Done(s_ok);
            case "REWRITE" when arguments.Length == 2:
                return Done(Error("The server is running without a config file"));
            default:
                return Done(arguments.Length == 2 && sub is "GET" or "SET"
                    ? Error($"wrong number of arguments for 'config|{sub.ToLowerInvariant()}' command")
                    : UnknownSubcommand(arguments[1], "CONFIG"));
        }
    }

    /// <summary>CONFIG SET maxmemory / maxmemory-policy: replicated through the log, so every node evicts alike.</summary>
    private async ValueTask<Reply> ConfigSetAsync(byte[][] arguments, CancellationToken cancellationToken)
    {
        if (arguments.Length % 2 != 0)
        {
            return Error("wrong number of arguments for 'config|set' command");
        }

        long limit = Host.Cache.MaxMemoryBytes;
        var policy = Host.Cache.Policy;
        for (int i = 2; i < arguments.Length; i += 2)
        {
            string name = Text(arguments[i]).ToLowerInvariant();
            string value = Text(arguments[i + 1]);
            if (name == "maxmemory")
            {
                if (!TryParseMemory(value, out limit))
                {
                    return Error($"CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer");
                }
            }
            else if (name == "maxmemory-policy")
            {
                if (!Stcache.Cache.EvictionPolicies.TryParse(value, out policy))
                {
                    return Error($"CONFIG SET failed (possibly related to argument '{name}') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction");
                }
            }
            else
            {
                return Error($"Unknown option or number of arguments for CONFIG SET - '{Text(arguments[i])}'");
            }
        }

        var outcome = await Service.WriteAsync(WriteRequest.Of(Stcache.Cache.WriteCommand.MemoryPolicy(limit, policy)), cancellationToken).ConfigureAwait(false);
        return outcome.Status == WriteStatus.Applied ? s_ok : WriteFailure(outcome);
    }

    /// <summary>Redis's memory units: a number of bytes, or with k, kb, m, mb, g, gb (any case).</summary>
    private static bool TryParseMemory(string text, out long bytes)
    {
        bytes = 0;
        string lower = text.ToLowerInvariant();
        (string Suffix, long Unit)[] units = [("kb", 1024), ("mb", 1L << 20), ("gb", 1L << 30), ("k", 1000), ("m", 1_000_000), ("g", 1_000_000_000)];
        long unit = 1;
        foreach (var (suffix, size) in units)
        {
            if (lower.EndsWith(suffix, StringComparison.Ordinal))
            {
                lower = lower[..^suffix.Length];
                unit = size;
                break;
            }
        }

        if (!long.TryParse(lower, NumberStyles.None, CultureInfo.InvariantCulture, out long number))
        {
            return false;
        }

        try
        {
            bytes = checked(number * unit);
            return true;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

    // ---- INFO, TIME, ROLE, WAIT ----------------------------------------------------------------------------------------

    private static readonly string[] s_defaultSections = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "cluster", "keyspace", "raft"];

    private ValueTask<Reply> Info(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        var wanted = arguments.Length == 1
            ? s_defaultSections.ToList()
            : arguments.Skip(1).Select(a => Text(a).ToLowerInvariant()).SelectMany(s => s is "all" or "everything" or "default" ? s_defaultSections : [s]).Distinct().ToList();
        string text = InfoText(wanted);
        return Done(w => w.Verbatim(text));
    }

    public string InfoText(IReadOnlyCollection<string> sections)
    {
        var status = Host.Status;
        var text = new StringBuilder();
        void Section(string name, Action body)
        {
            if (!sections.Contains(name))
            {
                return;
            }

            if (text.Length > 0)
            {
                text.Append("\r\n");
            }

            text.Append("# ").Append(char.ToUpperInvariant(name[0])).Append(name.AsSpan(1)).Append("\r\n");
            body();
        }

        void Line(string key, object value) => text.Append(CultureInfo.InvariantCulture, $"{key}:{value}\r\n");
        var uptime = DateTimeOffset.UtcNow - _server.StartedAt;
        Section("server", () =>
        {
            Line("redis_version", RedisVersion);
            Line("redis_mode", "standalone");
            Line("stcache_version", typeof(RespServer).Assembly.GetName().Version?.ToString() ?? "0");
            Line("os", System.Runtime.InteropServices.RuntimeInformation.OSDescription);
            Line("arch_bits", IntPtr.Size * 8);
            Line("process_id", Environment.ProcessId);
            Line("run_id", s_runId);
            Line("tcp_port", _server.Port);
            Line("server_time_usec", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000);
            Line("uptime_in_seconds", (long)uptime.TotalSeconds);
            Line("uptime_in_days", (long)uptime.TotalDays);
        });
        Section("clients", () =>
        {
            Line("connected_clients", _server.ConnectionCount);
            Line("maxclients", _server.Options.RespClientsMax);
            Line("blocked_clients", 0);
            Line("pubsub_clients", _server.Connections.Count(c => c.Subscribed));
        });
        Section("memory", () =>
        {
            // used_memory is the accounted memory the limit applies to (docs/CACHE.md), as Redis compares its
            // used_memory with maxmemory; the process's own figures follow.
            long used = Host.Cache.UsedMemoryBytes;
            long limit = Host.Cache.MaxMemoryBytes;
            Line("used_memory", used);
            Line("used_memory_human", $"{used / 1048576.0:0.00}M");
            Line("used_memory_rss", Environment.WorkingSet);
            Line("used_memory_rss_human", $"{Environment.WorkingSet / 1048576.0:0.00}M");
            Line("used_memory_dataset", used);
            Line("used_memory_heap", GC.GetTotalMemory(false));
            Line("maxmemory", limit);
            Line("maxmemory_human", $"{limit / 1048576.0:0.00}M");
            Line("maxmemory_policy", Host.Cache.Policy.Name());
            Line("evicted_keys", Host.Cache.EvictedKeys);
            Line("expired_keys", Host.Cache.ExpiredKeys);
        });
        Section("persistence", () =>
        {
            Line("loading", 0);
            Line("aof_enabled", 1);
            Line("rdb_bgsave_in_progress", 0);
            Line("raft_snapshot_index", status.SnapshotIndex.Value);
        });
        Section("stats", () =>
        {
            Line("total_connections_received", Interlocked.Read(ref _server.ConnectionsReceived));
            Line("total_commands_processed", Interlocked.Read(ref _server.CommandsProcessed));
            Line("rejected_connections", Interlocked.Read(ref _server.ConnectionsRejected));
            Line("pubsub_channels", _server.ChannelCount);
            Line("pubsub_patterns", _server.PatternCount);
            Line("expired_keys", Host.Cache.ExpiredKeys);
            Line("evicted_keys", Host.Cache.EvictedKeys);
        });
        Section("replication", () =>
        {
            if (status.IsLeader)
            {
                var replicas = status.Progress.Where(p => p.Id != Host.Id).ToList();
                Line("role", "master");
                Line("connected_slaves", replicas.Count(p => p.RecentActive));
                int i = 0;
                foreach (var replica in replicas)
                {
                    var (host, port) = RespEndPoint(replica.Id);
                    Line($"slave{i++}", $"ip={host},port={port},state={(replica.RecentActive ? "online" : "wait_bgsave")},offset={replica.Match.Value},lag=0");
                }
            }
            else
            {
                var (host, port) = status.Leader.IsNone ? (string.Empty, 0) : RespEndPoint(status.Leader);
                Line("role", "slave");
                Line("master_host", host);
                Line("master_port", port);
                Line("master_link_status", status.Leader.IsNone ? "down" : "up");
                Line("master_last_io_seconds_ago", 0);
                Line("master_sync_in_progress", 0);
                Line("slave_read_repl_offset", status.Applied.Value);
                Line("slave_repl_offset", status.Applied.Value);
                Line("slave_priority", 100);
                Line("slave_read_only", 1);
                Line("connected_slaves", 0);
            }

            Line("master_failover_state", "no-failover");
            Line("master_replid", s_runId);
            Line("master_repl_offset", status.Commit.Value);
        });
        Section("cpu", () =>
        {
            var process = Process.GetCurrentProcess();
            Line("used_cpu_sys", process.PrivilegedProcessorTime.TotalSeconds.ToString("0.000000", CultureInfo.InvariantCulture));
            Line("used_cpu_user", process.UserProcessorTime.TotalSeconds.ToString("0.000000", CultureInfo.InvariantCulture));
        });
        Section("cluster", () => Line("cluster_enabled", 0));
        Section("keyspace", () =>
        {
            int keys = Host.Cache.Count;
            if (keys > 0)
            {
                Line("db0", $"keys={keys},expires=0,avg_ttl=0");
            }
        });
        Section("raft", () =>
        {
            Line("raft_node_id", Host.Id.Value);
            Line("raft_role", status.Role);
            Line("raft_term", status.Term.Value);
            Line("raft_leader_id", status.Leader.Value);
            Line("raft_commit_index", status.Commit.Value);
            Line("raft_applied_index", status.Applied.Value);
            Line("raft_last_index", status.LastIndex.Value);
            Line("raft_snapshot_index", status.SnapshotIndex.Value);
            Line("raft_voters", string.Join(',', status.ConfState.Voters.Select(v => v.Value)));
            Line("raft_learners", string.Join(',', status.ConfState.Learners.Select(v => v.Value)));
            Line("raft_ticks", status.Ticks);
        });
        return text.ToString();
    }

    /// <summary>Where a member answers RESP: its advertised address, or its HTTP host with port 0 when unknown.</summary>
    private (string Host, int Port) RespEndPoint(NodeId id)
    {
        var member = Host.Members.Find(id);
        string address = member?.RespAddress ?? string.Empty;
        if (address.Length == 0)
        {
            string http = member?.HttpAddress ?? string.Empty;
            return (http.Length > 0 ? http[..http.LastIndexOf(':')] : string.Empty, 0);
        }

        int colon = address.LastIndexOf(':');
        return (address[..colon], int.Parse(address[(colon + 1)..], CultureInfo.InvariantCulture));
    }

    private static ValueTask<Reply> Time(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        long micros = (DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch).Ticks / 10;
        return Done(w =>
        {
            w.Array(2);
            w.Bulk((micros / 1_000_000).ToString(CultureInfo.InvariantCulture));
            w.Bulk((micros % 1_000_000).ToString(CultureInfo.InvariantCulture));
        });
    }

    private ValueTask<Reply> Role(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        var status = Host.Status;
        if (status.IsLeader)
        {
            var replicas = status.Progress.Where(p => p.Id != Host.Id).Select(p => (RespEndPoint(p.Id), p.Match.Value)).ToList();
            return Done(w =>
            {
                w.Array(3);
                w.Bulk("master");
                w.Integer((long)status.Commit.Value);
                w.Array(replicas.Count);
                foreach (var ((host, port), match) in replicas)
                {
                    w.Array(3);
                    w.Bulk(host);
                    w.Bulk(port.ToString(CultureInfo.InvariantCulture));
                    w.Bulk(match.ToString(CultureInfo.InvariantCulture));
                }
            });
        }

        var (leaderHost, leaderPort) = status.Leader.IsNone ? (string.Empty, 0) : RespEndPoint(status.Leader);
        return Done(w =>
        {
            w.Array(5);
            w.Bulk("slave");
            w.Bulk(leaderHost);
            w.Integer(leaderPort);
            w.Bulk(status.Leader.IsNone ? "connect" : "connected");
            w.Integer((long)status.Applied.Value);
        });
    }

    /// <summary>
    /// WAIT numreplicas timeout: how many other members hold the connection's last write. An acknowledged write is
    /// already on a majority, so that many are counted at least; the leader counts from its replication progress.
    /// It answers at once (Redis may return fewer than asked after the timeout; stcache never blocks here).
    /// </summary>
    private ValueTask<Reply> Wait(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (!RespParser.TryParseInt64(arguments[1], out long wanted) || !RespParser.TryParseInt64(arguments[2], out long timeout))
        {
            return Done(s_notInteger);
        }

        if (timeout < 0)
        {
            return Done(Error("timeout is negative"));
        }

        var status = Host.Status;
        int voters = status.ConfState.Voters.Count;
        long floor = connection.LastWriteIndex == 0 ? 0 : Math.Max(0, (voters / 2 + 1) - 1);
        long counted = status.IsLeader
            ? status.Progress.Count(p => p.Id != Host.Id && p.Match.Value >= connection.LastWriteIndex)
            : floor;
        return Done(Integer(Math.Max(counted, floor)));
    }

    // ---- MULTI / EXEC ---------------------------------------------------------------------------------------------------

    private static ValueTask<Reply> Multi(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (connection.Queued is not null)
        {
            return Done(Error("MULTI calls can not be nested"));
        }

        connection.Queued = [];
        connection.TransactionFailed = false;
        return Done(s_ok);
    }

    private static ValueTask<Reply> Discard(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (connection.Queued is null)
        {
            return Done(Error("DISCARD without MULTI"));
        }

        connection.Queued = null;
        connection.TransactionFailed = false;
        connection.Watched.Clear();
        return Done(s_ok);
    }

    /// <summary>
    /// Records each key's version as of now (for an absent key, its deletion bucket's last deletion index:
    /// <see cref="CacheStateMachine.WatchToken"/>): after a confirmation round (a follower's state may lag, and a
    /// version read from the past could match again after the key was changed and deleted). EXEC sends them in its
    /// log entry, and the state machine applies the batch only if none changed (<see cref="Op.IfVersions"/>).
    /// </summary>
    private async ValueTask<Reply> Watch(RespConnection connection, byte[][] arguments, CancellationToken cancellationToken)
    {
        if (connection.Queued is not null)
        {
            return Error("WATCH inside MULTI is not allowed");
        }

        var barrier = await Service.ReadBarrierAsync(ReadConsistency.Linearizable, cancellationToken).ConfigureAwait(false);
        if (!barrier.Succeeded)
        {
            return ReadFailure(barrier);
        }

        foreach (byte[] key in arguments.Skip(1))
        {
            connection.Watched.TryAdd(Encoding.Latin1.GetString(key), (key, Host.Cache.WatchToken(key)));
        }

        return s_ok;
    }

    private async ValueTask<Reply> Exec(RespConnection connection, byte[][] arguments, CancellationToken cancellationToken)
    {
        if (connection.Queued is not { } queued)
        {
            return Error("EXEC without MULTI");
        }

        connection.Queued = null;
        var watched = connection.Watched.ToList();
        connection.Watched.Clear();
        if (connection.TransactionFailed)
        {
            connection.TransactionFailed = false;
            return w => w.CodedError("EXECABORT Transaction discarded because of previous errors.");
        }

        if (queued.Count == 0 && watched.Count == 0)
        {
            return w => w.Array(0);
        }

        // One log entry: every queued command applied atomically on every replica; the reply is their array. Under
        // WATCH the entry carries the watched versions and the state machine decides, when it applies the entry,
        // whether anything changed since (then nothing is applied and the reply is a null).
        var outcome = await Service.WriteAsync(WriteRequest.RedisTransaction(queued, watched.Select(pair => pair.Value)), cancellationToken).ConfigureAwait(false);
        if (outcome.Status == WriteStatus.Applied)
        {
            connection.LastWriteIndex = Host.Cache.AppliedIndex.Value;
            if (outcome.Result.Reply is { Kind: ReplyKind.Null })
            {
                return w => w.NullArray();
            }
        }

        return Render(outcome);
    }

    // ---- pub/sub ----------------------------------------------------------------------------------------------------------

    private Reply Subscribe(RespConnection connection, byte[][] arguments, bool pattern)
    {
        var names = arguments.Skip(1).Select(Text).ToList();
        var counts = new List<int>();
        foreach (string name in names)
        {
            if ((pattern ? connection.Patterns : connection.Channels).Add(name))
            {
                _server.Subscribe(connection, name, pattern);
            }

            counts.Add(connection.Channels.Count + connection.Patterns.Count);
        }

        string kind = pattern ? "psubscribe" : "subscribe";
        return w =>
        {
            for (int i = 0; i < names.Count; i++)
            {
                w.Push(3);
                w.Bulk(kind);
                w.Bulk(names[i]);
                w.Integer(counts[i]);
            }
        };
    }

    private Reply Unsubscribe(RespConnection connection, byte[][] arguments, bool pattern)
    {
        var set = pattern ? connection.Patterns : connection.Channels;
        var names = arguments.Length > 1 ? arguments.Skip(1).Select(Text).ToList() : set.ToList();
        var counts = new List<int>();
        foreach (string name in names)
        {
            if (set.Remove(name))
            {
                _server.Unsubscribe(connection, name, pattern);
            }

            counts.Add(connection.Channels.Count + connection.Patterns.Count);
        }

        string kind = pattern ? "punsubscribe" : "unsubscribe";
        return w =>
        {
            if (names.Count == 0)
            {
                w.Push(3);
                w.Bulk(kind);
                w.Null();
                w.Integer(0);
                return;
            }

            for (int i = 0; i < names.Count; i++)
            {
                w.Push(3);
                w.Bulk(kind);
                w.Bulk(names[i]);
                w.Integer(counts[i]);
            }
        };
    }
}
