using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Spectre.Console;
using Stcache.Cache;
using Stcache.LoadGen;
using Stcache.Raft;
using Stcache.Server;
using Stcache.Storage;

namespace Stcache.Cli;

/// <summary>Where stcachectl reads and writes; tests pass in-memory streams.</summary>
internal sealed class CliIo
{
    public required Stream Stdout { get; init; }

    public required TextWriter Out { get; init; }

    public required TextWriter Error { get; init; }

    public required Func<Stream> OpenStdin { get; init; }

    /// <summary>True on a terminal: live views redraw in place and progress bars animate.</summary>
    public bool Interactive { get; init; }

    public static CliIo FromConsole()
    {
        var stdout = Console.OpenStandardOutput();
        return new CliIo
        {
            Stdout = stdout,
            Out = Console.Out,
            Error = Console.Error,
            OpenStdin = Console.OpenStandardInput,
            Interactive = !Console.IsOutputRedirected,
        };
    }

    public IAnsiConsole CreateConsole()
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Out),
            Ansi = Interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = Interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = Interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        if (!Interactive)
        {
            // Piped or captured: no terminal width to fit, and a row wrapped over two lines breaks grep and awk.
            console.Profile.Width = 400;
        }

        return console;
    }
}

/// <summary>stcachectl's commands: a client of stcached's /v1 API plus offline data tools.</summary>
internal static class Cli
{
    public const int ExitOk = 0;
    public const int ExitFailed = 1;
    public const int ExitUsage = 2;
    public const int ExitUnavailable = 3;

    private static readonly Option<string> s_endpoints = new("--endpoints", "-e")
    {
        Description = "node API addresses, [https://]host:port[,...]; each is tried in turn (default $STCACHE_ENDPOINTS or 127.0.0.1:6000)",
        Recursive = true,
    };

    private static readonly Option<string?> s_token = new("--token")
    {
        Description = "API token (default $STCACHE_AUTH_TOKEN)",
        Recursive = true,
    };

    private static readonly Option<double> s_timeout = new("--timeout")
    {
        Description = "request timeout in seconds",
        DefaultValueFactory = _ => 10,
        Recursive = true,
    };

    private static readonly Option<string> s_output = OutputOption();

    public static async Task<int> RunAsync(string[] args, CliIo io, CancellationToken cancellationToken = default)
    {
        var root = Build(io);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                await io.Error.WriteLineAsync("stcachectl: " + error.Message);
            }

            await io.Error.WriteLineAsync("run 'stcachectl --help' for usage");
            return ExitUsage;
        }

        var configuration = new InvocationConfiguration { Output = io.Out, Error = io.Error, EnableDefaultExceptionHandler = false };
        try
        {
            return await parsed.InvokeAsync(configuration, cancellationToken);
        }
        catch (NoNodeAnsweredException e)
        {
            return Fail(io, ExitUnavailable, e.Message);
        }
        catch (RequestFailedException e)
        {
            return Fail(io, ExitFailed, e.Message);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or DataDirectoryException or StorageCorruptionException or UsageException or System.Text.Json.JsonException)
        {
            return Fail(io, e is UsageException ? ExitUsage : ExitFailed, e.Message);
        }
        catch (OperationCanceledException)
        {
            return ExitFailed;
        }
    }

    public static RootCommand Build(CliIo io)
    {
        var root = new RootCommand("stcachectl: operate an stcache cluster. Exit codes: 0 ok, 1 request failed, 2 usage, 3 no node answered.");
        root.Options.Add(s_endpoints);
        root.Options.Add(s_token);
        root.Options.Add(s_timeout);
        root.Options.Add(s_output);

        root.Subcommands.Add(GetCommand(io));
        root.Subcommands.Add(SetCommand(io));
        root.Subcommands.Add(DeleteCommand(io));
        root.Subcommands.Add(MembersCommand(io));
        root.Subcommands.Add(TransferCommand(io));
        root.Subcommands.Add(SnapshotCommand(io));
        root.Subcommands.Add(StatusCommand(io));
        root.Subcommands.Add(ClusterCommand(io));
        root.Subcommands.Add(WatchCommand(io));
        root.Subcommands.Add(BenchCommand(io));
        root.Subcommands.Add(InspectCommand(io));
        root.Subcommands.Add(RecoverCommand(io));
        return root;
    }

    // ---- key-value ------------------------------------------------------------------------------------------

    private static Command GetCommand(CliIo io)
    {
        var key = new Argument<string>("key");
        var consistency = new Option<string>("--consistency") { Description = "linearizable, lease or stale", DefaultValueFactory = _ => "linearizable" };
        consistency.AcceptOnlyFromAmong("linearizable", "lease", "stale");
        var command = new Command("get", "print a key's value (raw bytes)") { key, consistency };
        command.SetAction(async (parse, cancel) =>
        {
            var client = ClientFor(parse);
            var response = await client.SendAsync(HttpMethod.Get, $"/v1/kv/{Escape(parse.GetValue(key)!)}?consistency={parse.GetValue(consistency)}", cancellationToken: cancel);
            if (response.IsSuccess)
            {
                await io.Stdout.WriteAsync(response.Body, cancel);
                await io.Stdout.FlushAsync(cancel);
                return ExitOk;
            }

            return Report(io, response);
        });
        return command;
    }

    private static Command SetCommand(CliIo io)
    {
        var key = new Argument<string>("key");
        var value = new Argument<string>("value") { Description = "the value; - reads it from standard input" };
        var ttl = new Option<double?>("--ttl") { Description = "expire the key after this many seconds" };
        var prevVersion = new Option<ulong?>("--prev-version") { Description = "write only if the key's version is N (0: only if absent)" };
        var command = new Command("set", "write a value") { key, value, ttl, prevVersion };
        command.SetAction(async (parse, cancel) =>
        {
            string text = parse.GetValue(value)!;
            byte[] body = text == "-" ? await ReadAllAsync(io.OpenStdin(), cancel) : Encoding.UTF8.GetBytes(text);
            var query = new List<string>();
            if (parse.GetValue(ttl) is { } seconds)
            {
                if (seconds <= 0 || double.IsNaN(seconds))
                {
                    return Fail(io, ExitUsage, "--ttl must be a positive number of seconds");
                }

                query.Add("ttl=" + seconds.ToString(CultureInfo.InvariantCulture));
            }

            if (parse.GetValue(prevVersion) is { } version)
            {
                query.Add("prevVersion=" + version.ToString(CultureInfo.InvariantCulture));
            }

            string path = $"/v1/kv/{Escape(parse.GetValue(key)!)}" + (query.Count > 0 ? "?" + string.Join('&', query) : string.Empty);
            return Report(io, await ClientFor(parse).SendAsync(HttpMethod.Put, path, body, cancellationToken: cancel));
        });
        return command;
    }

    private static Command DeleteCommand(CliIo io)
    {
        var key = new Argument<string>("key");
        var prevVersion = new Option<ulong?>("--prev-version") { Description = "delete only if the key's version is N" };
        var command = new Command("delete", "delete a key") { key, prevVersion };
        command.SetAction(async (parse, cancel) =>
        {
            string query = parse.GetValue(prevVersion) is { } version ? "?prevVersion=" + version.ToString(CultureInfo.InvariantCulture) : string.Empty;
            return Report(io, await ClientFor(parse).SendAsync(HttpMethod.Delete, $"/v1/kv/{Escape(parse.GetValue(key)!)}{query}", cancellationToken: cancel));
        });
        return command;
    }

    // ---- cluster --------------------------------------------------------------------------------------------

    private static Command MembersCommand(CliIo io)
    {
        var list = new Command("list", "list the members");
        list.SetAction((parse, cancel) => ListMembersAsync(io, parse, cancel));

        var raft = new Argument<string>("raft-address") { Description = "the new member's raft host:port" };
        var http = new Argument<string>("http-address") { Description = "the new member's API host:port" };
        var name = new Argument<string?>("name") { Arity = ArgumentArity.ZeroOrOne };
        var add = new Command("add", "add a member (it joins as a learner and is promoted once caught up)") { raft, http, name };
        add.SetAction(async (parse, cancel) =>
        {
            var request = new MemberRequest(null, parse.GetValue(name), parse.GetValue(raft), parse.GetValue(http));
            byte[] body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(request, ApiJson.Default.MemberRequest);
            var response = await ClientFor(parse).SendAsync(HttpMethod.Post, "/v1/cluster/members", body, "application/json", cancel);
            return response.IsSuccess ? await ListMembersAsync(io, parse, cancel) : Report(io, response);
        });

        var id = new Argument<string>("id") { Description = "member id or name" };
        var remove = new Command("remove", "remove a member") { id };
        remove.SetAction(async (parse, cancel) =>
            Report(io, await ClientFor(parse).SendAsync(HttpMethod.Delete, $"/v1/cluster/members/{Escape(parse.GetValue(id)!)}", cancellationToken: cancel)));

        var command = new Command("members", "list, add or remove members") { list, add, remove };
        command.SetAction((parse, cancel) => ListMembersAsync(io, parse, cancel));
        return command;
    }

    private static async Task<int> ListMembersAsync(CliIo io, ParseResult parse, CancellationToken cancel)
    {
        var members = await ClientFor(parse).GetJsonAsync("/mgmt/nodes", ApiJson.Default.MemberViewArray, cancel);
        if (Json(parse))
        {
            await io.Out.WriteLineAsync(Render.ToJson(members, ApiJson.Default.MemberViewArray));
        }
        else
        {
            io.CreateConsole().Write(Render.MembersTable(members));
        }

        return ExitOk;
    }

    private static Command TransferCommand(CliIo io)
    {
        var id = new Argument<string?>("id") { Arity = ArgumentArity.ZeroOrOne, Description = "target id or name (default: the most up-to-date voter)" };
        var command = new Command("transfer-leader", "move leadership to another voter") { id };
        command.SetAction(async (parse, cancel) =>
        {
            string query = parse.GetValue(id) is { } target ? "?id=" + Escape(target) : string.Empty;
            var response = await ClientFor(parse).SendAsync(HttpMethod.Post, "/v1/cluster/transfer-leader" + query, cancellationToken: cancel);
            if (!response.IsSuccess || Json(parse))
            {
                return Report(io, response);
            }

            var status = System.Text.Json.JsonSerializer.Deserialize(response.Body, ApiJson.Default.StatusView)!;
            await io.Out.WriteLineAsync($"leader is now {status.Name} ({status.Id}), term {status.Term}");
            return ExitOk;
        });
        return command;
    }

    private static Command StatusCommand(CliIo io)
    {
        var command = new Command("status", "the answering node's status");
        command.SetAction(async (parse, cancel) =>
        {
            var status = await ClientFor(parse).GetJsonAsync("/v1/status", ApiJson.Default.StatusView, cancel);
            if (Json(parse))
            {
                await io.Out.WriteLineAsync(Render.ToJson(status, ApiJson.Default.StatusView));
            }
            else
            {
                io.CreateConsole().Write(Render.StatusTable(status));
            }

            return ExitOk;
        });
        return command;
    }

    private static Command ClusterCommand(CliIo io)
    {
        var command = new Command("cluster", "every member's status, with its lag behind the leader");
        command.SetAction(async (parse, cancel) =>
        {
            var view = ClusterRows.From(await ClientFor(parse).GetJsonAsync("/v1/cluster", ApiJson.Default.ClusterView, cancel));
            if (Json(parse))
            {
                await io.Out.WriteLineAsync(Render.ToJson(view, CliJson.Default.ClusterSummary));
            }
            else
            {
                io.CreateConsole().Write(Render.ClusterTable(view));
            }

            return ExitOk;
        });
        return command;
    }

    private static Command WatchCommand(CliIo io)
    {
        var interval = new Option<double>("--interval") { Description = "seconds between refreshes", DefaultValueFactory = _ => 1 };
        var count = new Option<int>("--count") { Description = "stop after this many refreshes (default: until Ctrl-C)" };
        var command = new Command("watch", "a live view of the cluster: roles, terms, indexes and lag") { interval, count };
        command.SetAction(async (parse, cancel) =>
        {
            var client = ClientFor(parse);
            var period = TimeSpan.FromSeconds(Math.Max(0.1, parse.GetValue(interval)));
            int limit = parse.GetValue(count);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                e.Cancel = true;
                stop.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                var watcher = new ClusterWatcher(client);
                if (io.Interactive && !Json(parse))
                {
                    var console = io.CreateConsole();
                    await console.Live(new Text("connecting...")).StartAsync(async live =>
                    {
                        for (int i = 0; limit <= 0 || i < limit; i++)
                        {
                            live.UpdateTarget(await watcher.RenderAsync(stop.Token));
                            if (!await DelayAsync(period, stop.Token))
                            {
                                return;
                            }
                        }
                    });
                    return ExitOk;
                }

                for (int i = 0; limit <= 0 || i < limit; i++)
                {
                    var summary = await watcher.PollAsync(stop.Token);
                    if (Json(parse))
                    {
                        await io.Out.WriteLineAsync(Render.ToJson(summary, CliJson.Default.ClusterSummary, indented: false));
                    }
                    else
                    {
                        var console = io.CreateConsole();
                        console.Write(Render.ClusterTable(summary));
                    }

                    await io.Out.FlushAsync(stop.Token);
                    if ((limit <= 0 || i + 1 < limit) && !await DelayAsync(period, stop.Token))
                    {
                        break;
                    }
                }

                return ExitOk;
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        });
        return command;
    }

    private static Command BenchCommand(CliIo io)
    {
        var connections = new Option<int>("--connections", "-c") { Description = "concurrent closed-loop clients", DefaultValueFactory = _ => 16 };
        var duration = new Option<double>("--duration", "-d") { Description = "measured seconds", DefaultValueFactory = _ => 10 };
        var warmup = new Option<double>("--warmup") { Description = "unmeasured seconds before", DefaultValueFactory = _ => 1 };
        var keys = new Option<int>("--keys") { Description = "distinct keys", DefaultValueFactory = _ => 10_000 };
        var valueSize = new Option<int>("--value-size") { Description = "value bytes", DefaultValueFactory = _ => 100 };
        var readRatio = new Option<double>("--read-ratio") { Description = "share of reads, 0..1", DefaultValueFactory = _ => 0.5 };
        var consistency = new Option<string>("--consistency") { Description = "reads: linearizable, lease or stale", DefaultValueFactory = _ => "linearizable" };
        consistency.AcceptOnlyFromAmong("linearizable", "lease", "stale");
        var command = new Command("bench", "generate load against the endpoints with a live progress line, then print latency and throughput")
        {
            connections, duration, warmup, keys, valueSize, readRatio, consistency,
        };
        command.SetAction(async (parse, cancel) =>
        {
            LoadOptions options;
            try
            {
                options = new LoadOptions
                {
                    Targets = [.. Endpoints(parse).Select(e => new Uri(ApiClient.BaseUrl(e)))],
                    Connections = parse.GetValue(connections),
                    Duration = TimeSpan.FromSeconds(parse.GetValue(duration)),
                    Warmup = TimeSpan.FromSeconds(parse.GetValue(warmup)),
                    KeyCount = parse.GetValue(keys),
                    ValueSizeBytes = parse.GetValue(valueSize),
                    ReadRatio = parse.GetValue(readRatio),
                    Consistency = parse.GetValue(consistency)!,
                    KeyPrefix = "bench-",
                };
                options.Validate();
            }
            catch (ArgumentException e)
            {
                return Fail(io, ExitUsage, e.Message);
            }

            using var generator = new LoadGenerator(options);
            var run = generator.RunAsync(cancel);
            var total = options.Warmup + options.Duration;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string Line()
            {
                double elapsed = Math.Min(clock.Elapsed.TotalSeconds, total.TotalSeconds);
                long done = generator.FinishedOperations;
                return string.Create(CultureInfo.InvariantCulture,
                    $"{elapsed,5:0.0}/{total.TotalSeconds:0.#} s  {done,9:N0} ops  {(elapsed > 0 ? done / elapsed : 0),9:N0} ops/s  {generator.FailedOperations:N0} errors");
            }

            if (io.Interactive && !Json(parse))
            {
                await io.CreateConsole().Live(new Text(Line())).StartAsync(async live =>
                {
                    while (await Task.WhenAny(run, Task.Delay(250, cancel)) != run)
                    {
                        live.UpdateTarget(new Text(Line()));
                    }

                    live.UpdateTarget(new Text(Line()));
                });
            }
            else
            {
                // Not a terminal: one progress line per second on standard error, the report alone on standard output.
                while (await Task.WhenAny(run, Task.Delay(1000, cancel)) != run)
                {
                    await io.Error.WriteLineAsync("bench: " + Line());
                }

                // And the final one, as the terminal's live line ends: a run shorter than a second printed none.
                await io.Error.WriteLineAsync("bench: " + Line());
            }

            var report = await run;
            await io.Out.WriteLineAsync(Json(parse) ? report.ToJson() : report.ToTable());
            return report.Succeeded > 0 ? ExitOk : ExitFailed;
        });
        return command;
    }

    // ---- snapshots ------------------------------------------------------------------------------------------

    private static Command SnapshotCommand(CliIo io)
    {
        var file = new Argument<string>("file");
        var save = new Command("save", "take a snapshot on the leader and stream it to FILE (a backup)") { file };
        save.SetAction((parse, cancel) => SnapshotSaveAsync(io, parse, parse.GetValue(file)!, cancel));

        var restoreFile = new Argument<string>("file");
        var dataDir = new Option<string>("--data-dir") { Description = "the new node's data directory (must not exist or be empty)", Required = true };
        var name = new Option<string?>("--name") { Description = "the new node's member name (default: its raft address)" };
        var raft = new Option<string>("--raft") { Description = "the new node's raft address", DefaultValueFactory = _ => "127.0.0.1:7000" };
        var http = new Option<string>("--http") { Description = "the new node's API address", DefaultValueFactory = _ => "127.0.0.1:6000" };
        var clusterId = new Option<string>("--cluster-id") { Description = "the new cluster's id", DefaultValueFactory = _ => "stcache" };
        var walSegmentSize = new Option<string?>("--wal-segment-size")
        {
            Description = "the write-ahead log segment size the node will run with, as stcached's --wal-segment-size (default 64mb)",
        };
        var restore = new Command("restore", "seed a new cluster's first node from a snapshot file; start stcached on --data-dir, then join others to it")
        {
            restoreFile, dataDir, name, raft, http, clusterId, walSegmentSize,
        };
        restore.SetAction(async parse =>
        {
            // Checked before anything is read or written: a bad size is a usage error, as stcached would report it.
            string? segmentSize = parse.GetValue(walSegmentSize);
            long segmentSizeBytes = segmentSize is null ? WalOptions.SegmentSizeBytesDefault : Stcache.Server.CommandLine.ParseWalSegmentSize(segmentSize);
            string raftAddress = Stcache.Server.CommandLine.NormalizeAddress(parse.GetValue(raft)!);
            string memberName = parse.GetValue(name) ?? raftAddress;
            var self = new MemberInfo(MemberInfo.IdFromName(memberName), memberName, raftAddress, Stcache.Server.CommandLine.NormalizeAddress(parse.GetValue(http)!));
            var metadata = ClusterSeed.Restore(parse.GetValue(restoreFile)!, parse.GetValue(dataDir)!, self, parse.GetValue(clusterId)!, segmentSizeBytes);
            await io.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"restored snapshot at index {metadata.Index.Value} (term {metadata.Term.Value}) into {Path.GetFullPath(parse.GetValue(dataDir)!)} as member {self.Name} ({self.Id})"));
            await io.Out.WriteLineAsync($"start it with: stcached --data-dir {parse.GetValue(dataDir)} --raft {self.RaftAddress} --http {self.HttpAddress}"
                + (segmentSize is null ? string.Empty : $" --wal-segment-size {segmentSize}"));
            return ExitOk;
        });

        var command = new Command("snapshot", "take a snapshot on the answering node; save or restore a backup") { save, restore };
        command.SetAction(async (parse, cancel) =>
        {
            var response = await ClientFor(parse).SendAsync(HttpMethod.Post, "/v1/snapshot", cancellationToken: cancel);
            if (!response.IsSuccess || Json(parse))
            {
                return Report(io, response);
            }

            var view = System.Text.Json.JsonSerializer.Deserialize(response.Body, ApiJson.Default.SnapshotView)!;
            await io.Out.WriteLineAsync($"snapshot taken on {response.Endpoint} at index {view.Index} (term {view.Term})");
            return ExitOk;
        });
        return command;
    }

    private static async Task<int> SnapshotSaveAsync(CliIo io, ParseResult parse, string file, CancellationToken cancel)
    {
        var client = ClientFor(parse);
        var status = await client.GetJsonAsync("/v1/status", ApiJson.Default.StatusView, cancel);
        string endpoint = client.Endpoints[0];
        string scheme = endpoint.StartsWith("https://", StringComparison.OrdinalIgnoreCase) ? "https" : "http";
        string source = status.Role == "leader" || status.LeaderAddress.Length == 0
            ? endpoint
            : $"{scheme}://{status.LeaderAddress}";
        if (status.Leader == "0")
        {
            return Fail(io, ExitFailed, "no leader is known; a consistent snapshot comes from the leader");
        }

        string temporary = file + ".part";
        using var request = new HttpRequestMessage(HttpMethod.Get, ApiClient.BaseUrl(source) + "/v1/snapshot/download");
        using var response = await client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (!response.IsSuccessStatusCode)
        {
            return Report(io, new Response(response.StatusCode, await response.Content.ReadAsByteArrayAsync(cancel), source));
        }

        long? length = response.Content.Headers.ContentLength;
        await using (var input = await response.Content.ReadAsStreamAsync(cancel))
        await using (var output = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            var buffer = new byte[128 * 1024];
            if (io.Interactive)
            {
                await io.CreateConsole().Progress().StartAsync(async progress =>
                {
                    var task = progress.AddTask($"snapshot from {source}", maxValue: length ?? 1);
                    int read;
                    while ((read = await input.ReadAsync(buffer, cancel)) > 0)
                    {
                        await output.WriteAsync(buffer.AsMemory(0, read), cancel);
                        task.Increment(read);
                    }

                    task.Value = task.MaxValue;
                });
            }
            else
            {
                await input.CopyToAsync(output, cancel);
            }

            output.Flush(true);
        }

        SnapshotFileInfo verified;
        try
        {
            verified = FileSnapshotStore.Verify(temporary);
        }
        catch (StorageCorruptionException e)
        {
            File.Delete(temporary);
            return Fail(io, ExitFailed, $"the snapshot received from {source} failed verification: {e.Message}");
        }

        File.Move(temporary, file, overwrite: true);
        await io.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"saved snapshot at index {verified.Metadata.Index.Value} (term {verified.Metadata.Term.Value}), {verified.FileBytes:N0} bytes, from {source} to {file}"));
        return ExitOk;
    }

    // ---- offline --------------------------------------------------------------------------------------------

    private static Command InspectCommand(CliIo io)
    {
        var dataDir = new Argument<string>("data-dir");
        var from = new Option<ulong?>("--from") { Description = "first log index to list" };
        var to = new Option<ulong?>("--to") { Description = "last log index to list" };
        var limit = new Option<int>("--limit") { Description = "entries listed at most", DefaultValueFactory = _ => 100 };
        var command = new Command("inspect", "print a stopped or live node's stored state (hard state, log, snapshots)") { dataDir, from, to, limit };
        command.SetAction(parse =>
        {
            var options = new InspectOptions
            {
                FromIndex = parse.GetValue(from) is { } f ? new LogIndex(f) : null,
                ToIndex = parse.GetValue(to) is { } t ? new LogIndex(t) : null,
                Limit = parse.GetValue(limit),
            };
            return new StorageInspector(parse.GetValue(dataDir)!, DescribeEntry).Inspect(io.Out, options);
        });
        return command;
    }

    private static Command RecoverCommand(CliIo io)
    {
        var dataDir = new Option<string>("--data-dir") { Description = "the stopped survivor's data directory", Required = true };
        var probeTimeout = new Option<double>("--probe-timeout") { Description = "seconds to wait for each old member to answer", DefaultValueFactory = _ => 2 };
        var command = new Command("recover", "after a lost quorum: turn a stopped survivor into a one-member cluster that keeps its data and id; refuses while a majority of the old members answers")
        {
            dataDir, probeTimeout,
        };
        command.SetAction(async (parse, cancel) =>
        {
            var recovery = new QuorumRecovery(parse.GetValue(dataDir)!, TimeSpan.FromSeconds(parse.GetValue(probeTimeout)), line => io.Out.WriteLine(line));
            return await recovery.RunAsync(ClientFor(parse).Http, cancel) ? ExitOk : ExitFailed;
        });
        return command;
    }

    // ---- helpers --------------------------------------------------------------------------------------------

    private static Option<string> OutputOption()
    {
        var option = new Option<string>("--output", "-o")
        {
            Description = "table or json",
            DefaultValueFactory = _ => "table",
            Recursive = true,
        };
        option.AcceptOnlyFromAmong("table", "json");
        return option;
    }

    internal static IReadOnlyList<string> Endpoints(ParseResult parse)
    {
        string list = parse.GetValue(s_endpoints) ?? Environment.GetEnvironmentVariable("STCACHE_ENDPOINTS") ?? "127.0.0.1:6000";
        var endpoints = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return endpoints.Length > 0 ? endpoints : throw new UsageException("--endpoints is empty");
    }

    private static ApiClient ClientFor(ParseResult parse)
    {
        var http = new HttpClient { Timeout = TimeSpan.FromSeconds(Math.Max(0.1, parse.GetValue(s_timeout))) };
        if ((parse.GetValue(s_token) ?? Environment.GetEnvironmentVariable("STCACHE_AUTH_TOKEN")) is { Length: > 0 } token)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return new ApiClient(http, Endpoints(parse));
    }

    private static bool Json(ParseResult parse) => parse.GetValue(s_output) == "json";

    private static async Task<bool> DelayAsync(TimeSpan period, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(period, cancellationToken);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Renders a cache command for the inspector's log listing.</summary>
    private static string DescribeEntry(ReadOnlyMemory<byte> data)
    {
        if (WriteCommand.TryDecode(data.Span, out var write, out long logTime, out _))
        {
            return $"{write!.Invocation.Op} at {logTime}: {string.Join(" ", write.Invocation.Args.Take(8).Select(arg => StorageInspector.Preview(arg.AsMemory())))}";
        }

        if (CacheCommand.TryDecode(data, out var command, out _))
        {
            string compare = command!.Compare switch
            {
                CompareKind.Version => $" if version={command.ExpectedVersion}",
                CompareKind.Value => " if value matches",
                _ => string.Empty,
            };
            return command.Kind == CommandKind.Set
                ? $"set {command.Key} = {StorageInspector.Preview(command.Value)}{compare}"
                : $"delete {command.Key}{compare}";
        }

        return StorageInspector.Preview(data);
    }

    private static int Report(CliIo io, Response response)
    {
        string text = Encoding.UTF8.GetString(response.Body);
        if (response.IsSuccess)
        {
            io.Out.Write(text.Length == 0 ? "ok\n" : text.EndsWith('\n') ? text : text + "\n");
            return ExitOk;
        }

        io.Error.Write($"stcachectl: {(int)response.Status} {response.Status} from {response.Endpoint}: {text}{(text.EndsWith('\n') ? string.Empty : "\n")}");
        return ExitFailed;
    }

    internal static int Fail(CliIo io, int code, string message)
    {
        io.Error.Write("stcachectl: " + message + (message.EndsWith('\n') ? string.Empty : "\n"));
        return code;
    }

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static async Task<byte[]> ReadAllAsync(Stream stdin, CancellationToken cancellationToken)
    {
        await using (stdin)
        {
            using var buffer = new MemoryStream();
            await stdin.CopyToAsync(buffer, cancellationToken);
            return buffer.ToArray();
        }
    }
}
