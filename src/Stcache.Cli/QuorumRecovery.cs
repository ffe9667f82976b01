using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;

using Stcache.Raft;
using Stcache.Server;
using Stcache.Storage;

namespace Stcache.Cli;

/// <summary>
/// Lost-quorum recovery of one stopped survivor (etcd's --force-new-cluster, Consul's peers.json, as one
/// command). It replays the survivor's whole log, including entries it never learned were committed (the old
/// majority may have acknowledged them), asks every other voter of the last configuration whether it still
/// answers, and refuses while a majority does: that cluster can still elect a leader, and a second one would
/// split it. Otherwise it snapshots the replayed state and rewrites the snapshot's configuration to this node
/// alone, keeping its id and name. Started normally, the node elects itself; fresh nodes then join it.
/// </summary>
internal sealed class QuorumRecovery(string dataDirectory, TimeSpan probeTimeout, Action<string> report)
{
    public async Task<bool> RunAsync(HttpClient http, CancellationToken cancellationToken)
    {
        if (!DataDirectory.IsDataDirectory(dataDirectory, out string? problem))
        {
            throw new DataDirectoryException($"{dataDirectory}: {problem}");
        }

        DataDirectory directory;
        try
        {
            directory = DataDirectory.Open(dataDirectory);
        }
        catch (DataDirectoryException e) when (e.Message.Contains("in use", StringComparison.Ordinal))
        {
            throw new DataDirectoryException(e.Message + "; stop the node before recovering it", e);
        }

        using (directory)
        {
            var identity = NodeIdentity.Load(directory.Path) ?? throw new InvalidDataException($"{directory.Path} holds no node identity ({NodeIdentity.FileName})");
            var self = new MemberInfo(identity.Id, identity.Name, identity.RaftAddress, identity.HttpAddress);
            // A one-shot tool: no next segment prepared in the background (the node prepares its own when it starts).
            using var wal = directory.OpenLog(new WalOptions { PrepareSegmentsAhead = false });
            var snapshots = directory.OpenSnapshots();
            var committedLog = new EverythingCommitted(wal);
            var options = new RaftHostOptions
            {
                // No ticks while replaying: this node must neither campaign nor change its term.
                Raft = new RaftConfig { Id = new NodeId(identity.Id), ElectionTimeoutTicks = 1000, HeartbeatIntervalTicks = 1, RandomSeed = 1 },
                Self = self,
                TickInterval = TimeSpan.FromHours(1),
                SnapshotInterval = TimeSpan.FromDays(1),
                SnapshotThreshold = ulong.MaxValue,
            };
            var cache = new CacheStateMachine();
            var members = new MemberBook();
            var host = new RaftHost(options, committedLog, snapshots, new NullPeerNetwork(), cache, members, NullLogger<RaftHost>.Instance);
            SnapshotMetadata replayed;
            ConfState configuration;
            IReadOnlyList<MemberInfo> book;
            await using (host)
            {
                host.Start();
                var last = committedLog.LastIndex;
                // Answered once the published status shows the index applied (with the configuration as of it).
                await host.WaitForAppliedAsync(last, TimeSpan.FromMinutes(5), cancellationToken);
                var status = host.Status;
                if (status.Applied < last)
                {
                    throw new InvalidOperationException($"the replay was answered at index {last} but the status shows {status.Applied} applied");
                }

                configuration = status.ConfState;
                book = members.All;
                string learners = configuration.Learners.Count > 0 ? ", learners " + string.Join(", ", configuration.Learners) : string.Empty;
                report(string.Create(CultureInfo.InvariantCulture,
                    $"survivor {self.Name} ({self.Id}): term {status.Term.Value}, log replayed to index {last.Value}, {cache.Count} keys; last configuration: voters {string.Join(", ", configuration.Voters)}{learners}"));
                if (!configuration.IsVoter(host.Id))
                {
                    report($"refusing: {self.Name} is not a voter of its last configuration, so it may lack committed writes; recover a voter instead");
                    return false;
                }

                if (configuration.Voters.Count == 1 && configuration.Learners.Count == 0)
                {
                    report("nothing to do: this node is already the only member; start it normally");
                    return true;
                }

                int majority = (configuration.Voters.Count / 2) + 1;
                var others = configuration.Voters.Where(v => v != host.Id).ToList();
                var answers = await Task.WhenAll(others.Select(id => ProbeAsync(http, book.FirstOrDefault(m => m.Id == id.Value), id, cancellationToken)));
                var alive = answers.Where(a => a.Answered).ToList();
                foreach (var answer in answers)
                {
                    report($"  voter {answer.Description}: {(answer.Answered ? "ANSWERS" : "no answer")}");
                }

                if (alive.Count >= majority)
                {
                    report(string.Create(CultureInfo.InvariantCulture,
                        $"refusing: {alive.Count} of {configuration.Voters.Count} voters still answer, a majority; that cluster can elect a leader on its own. Restart this node normally so it rejoins."));
                    return false;
                }

                committedLog.Decided = true;
                replayed = await host.SnapshotAsync(cancellationToken);
            }

            var snapshot = snapshots.LoadNewest() ?? throw new InvalidDataException("the snapshot of the replayed state could not be read back");
            if (snapshot.Metadata.Index != replayed.Index)
            {
                throw new InvalidDataException($"the newest snapshot is at {snapshot.Metadata.Index}, not at the replayed index {replayed.Index}");
            }

            var metadata = ClusterSeed.WriteSingleMember(snapshots, wal, snapshot, self, wal.HardState.Term);
            report(string.Create(CultureInfo.InvariantCulture,
                $"recovered: {self.Name} ({self.Id}) is now the only member of a new configuration, at index {metadata.Index.Value} (term {metadata.Term.Value}) with {cache.Count} keys."));
            report($"next: start it as before (stcached --data-dir {dataDirectory} ...), then start fresh nodes with --join {self.HttpAddress}; do not restart the old members' data directories.");
            return true;
        }
    }

    private async Task<(bool Answered, string Description)> ProbeAsync(HttpClient http, MemberInfo? member, NodeId id, CancellationToken cancellationToken)
    {
        string description = member is null ? id.ToString() : $"{member.Name} ({id}) api {member.HttpAddress} raft {member.RaftAddress}";
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(probeTimeout);
        if (member is { HttpAddress.Length: > 0 })
        {
            try
            {
                using var response = await http.GetAsync($"http://{member.HttpAddress}/healthz", timeout.Token);
                return (true, description);
            }
            catch (HttpRequestException e) when (e.HttpRequestError != HttpRequestError.ConnectionError)
            {
                // Something listens there (a TLS-only API refusing plain HTTP, for one): the member is alive.
                return (true, description);
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
            {
            }
        }

        // A member whose API does not answer but whose raft port accepts connections is still alive.
        if (member is { RaftAddress.Length: > 0 } && !cancellationToken.IsCancellationRequested)
        {
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            connectTimeout.CancelAfter(probeTimeout);
            int colon = member.RaftAddress.LastIndexOf(':');
            try
            {
                using var socket = new TcpClient();
                await socket.ConnectAsync(member.RaftAddress[..colon].Trim('[', ']'), int.Parse(member.RaftAddress[(colon + 1)..], CultureInfo.InvariantCulture), connectTimeout.Token);
                return (true, description);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or FormatException or ArgumentException)
            {
            }
        }

        return (false, description);
    }

    /// <summary>The survivor's log as if every entry in it were committed: the replay applies all of them.</summary>
    private sealed class EverythingCommitted(WriteAheadLog wal) : IRaftLogStore
    {
        private LogIndex _storedCommit;

        public LogIndex LastIndex { get; private set; }

        /// <summary>Until recovery is decided, nothing the replay does may claim on disk that the whole log is
        /// committed: a refused recovery leaves the directory as it found it.</summary>
        public bool Decided { get; set; }

        public PersistentState Load()
        {
            var state = wal.Load();
            _storedCommit = state.HardState.Commit;
            var last = state.Entries.Count > 0 ? state.Entries[^1].Index : state.Snapshot.Index;
            LastIndex = LogIndex.Max(last, state.HardState.Commit);
            return state with { HardState = state.HardState with { Commit = LastIndex } };
        }

        public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
        {
            if (!Decided && hardState is { } hard && hard.Commit > _storedCommit)
            {
                hardState = hard with { Commit = _storedCommit };
            }

            return wal.Save(hardState, entries);
        }

        public void ApplySnapshot(SnapshotMetadata snapshot) => wal.ApplySnapshot(snapshot);

        public void Compact(LogIndex upTo) => wal.Compact(upTo);
    }
}
