using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>Whether a write took effect. Only <see cref="Unknown"/> leaves a client unsure.</summary>
public enum WriteStatus
{
    Applied,

    /// <summary>Certainly not applied: it never reached a log, or its entry was overwritten.</summary>
    NotApplied,

    /// <summary>Proposed, but no answer arrived in time: it may or may not have been applied.</summary>
    Unknown,
}

/// <summary>Why a request did not complete, for the front end to translate (HTTP status, RESP error).</summary>
public enum FailureKind
{
    None,
    NoLeader,
    Timeout,
    Overloaded,
    ShuttingDown,
    LeaderUnreachable,

    /// <summary>This node is a follower and <c>--forward-writes=false</c>.</summary>
    ForwardingDisabled,

    /// <summary>The command breaks a limit (key or value size); nothing was proposed.</summary>
    Invalid,
}

/// <summary>The typed answer to a write: the state machine's result, or why there is none. <see cref="Leader"/> names
/// the leader a follower forwarded the write to (applied or not), or the leader a refusal points at.</summary>
public readonly record struct WriteOutcome(WriteStatus Status, ApplyResult Result, FailureKind Failure, string Detail, NodeId Leader)
{
    public static WriteOutcome Applied(ApplyResult result) => new(WriteStatus.Applied, result, FailureKind.None, string.Empty, NodeId.None);

    public static WriteOutcome Failed(FailureKind failure, string detail, bool outcomeUnknown = false, NodeId leader = default) =>
        new(outcomeUnknown ? WriteStatus.Unknown : WriteStatus.NotApplied, default, failure, detail, leader);
}

/// <summary>How fresh a read must be.</summary>
public enum ReadConsistency
{
    /// <summary>ReadIndex: confirmed by a quorum at the time of the read.</summary>
    Linearizable,

    /// <summary>The leader may skip the heartbeat round while its lease holds.</summary>
    Lease,

    /// <summary>Whatever this node has applied.</summary>
    Stale,
}

public readonly record struct ReadOutcome(FailureKind Failure, string Detail)
{
    public static readonly ReadOutcome Ok = new(FailureKind.None, string.Empty);

    /// <summary>The time the read is served at (Unix ms; docs/CACHE.md): the leader's when it confirmed the read
    /// index for a linearizable or lease read, this node's last applied log time for a stale one.</summary>
    public long ReadTimeUnixMs { get; init; }

    public bool Succeeded => Failure == FailureKind.None;
}

/// <summary>The leader's answer for one command of a forwarded batch (<c>POST /v1/internal/propose</c>).</summary>
public sealed record ForwardedResult(
    [property: JsonPropertyName("write")] WriteStatus Write,
    [property: JsonPropertyName("status")] ApplyStatus Status,
    [property: JsonPropertyName("version")] ulong Version,
    [property: JsonPropertyName("previousExisted")] bool PreviousExisted,
    [property: JsonPropertyName("failure")] FailureKind Failure,
    [property: JsonPropertyName("error")] string? Error,
    [property: JsonPropertyName("reply")] ReplyView? Reply)
{
    public static ForwardedResult From(WriteOutcome outcome) =>
        new(outcome.Status, outcome.Result.Status, outcome.Result.Version, outcome.Result.PreviousExisted, outcome.Failure,
            outcome.Status == WriteStatus.Applied ? outcome.Result.Error : outcome.Detail, ReplyView.From(outcome.Result.Reply));

    public WriteOutcome ToOutcome(NodeId leader) => Write == WriteStatus.Applied
        ? WriteOutcome.Applied(new ApplyResult(Status, Version, PreviousExisted, Error) { Reply = Reply?.ToReply() }) with { Leader = leader }
        : new WriteOutcome(Write, default, Failure, Error ?? string.Empty, leader);
}

[JsonSerializable(typeof(ForwardedResult[]))]
internal sealed partial class CommandJson : JsonSerializerContext
{
}

/// <summary>
/// What both front ends (HTTP and RESP) ask of the node, with no protocol in it: writes (proposed here on the leader,
/// forwarded to the leader inside the cluster from a follower), reads at a chosen consistency, one deadline per
/// request, and typed outcomes. Waiting for a leader is woken by the host's leadership event, not polled.
/// </summary>
internal sealed class CommandService
{
    public const string ProposePath = "/v1/internal/propose";

    private readonly RaftHost _host;
    private readonly ServerOptions _options;
    private readonly IHttpClientFactory _clients;
    private readonly ILogger _logger;
    private readonly ReadBatcher _linearizable;
    private readonly ReadBatcher _lease;
    private TaskCompletionSource _leaderChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Fired on every change of the member book or of leadership: what a forward waiting for its leader's HTTP
    // address wakes on (ForwardAsync).
    private TaskCompletionSource _addressesChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CommandService(RaftHost host, ServerOptions options, IHttpClientFactory clients, ILogger logger)
    {
        _host = host;
        _options = options;
        _clients = clients;
        _logger = logger;
        _linearizable = new ReadBatcher(host.NewReadRequest, (request, taken) => host.StartReadRound(false, request, taken));
        _lease = new ReadBatcher(host.NewReadRequest, (request, taken) => host.StartReadRound(true, request, taken));
        Trace = new FailoverTrace(host, logger);
        host.LeadershipChanged += _ =>
        {
            var previous = Interlocked.Exchange(ref _leaderChanged, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            previous.TrySetResult();
            SignalAddressesChanged();
        };
        host.Members.Changed += _ => SignalAddressesChanged();
    }

    public RaftHost Host => _host;

    /// <summary>The write path's first stages after each leadership change, logged once each.</summary>
    public FailoverTrace Trace { get; }

    /// <summary>A token that fires at the request's deadline (the node's request timeout) or when the caller gives up.</summary>
    public CancellationTokenSource Deadline(CancellationToken cancellationToken)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        source.CancelAfter(_host.RequestTimeout);
        return source;
    }

    /// <summary>The current status once a leader is known; null if none is elected before <paramref name="deadline"/>.</summary>
    public Task<HostStatus?> WaitForLeaderAsync(CancellationToken deadline) =>
        WaitForLeaderChangeAsync(status => !status.Leader.IsNone, deadline);

    /// <summary>
    /// The current status once <paramref name="until"/> holds for it, checked now and after every leadership change
    /// (signalled by the host, never polled); null if it does not hold before <paramref name="deadline"/>.
    /// </summary>
    public async Task<HostStatus?> WaitForLeaderChangeAsync(Func<HostStatus, bool> until, CancellationToken deadline)
    {
        while (true)
        {
            var changed = Volatile.Read(ref _leaderChanged).Task;
            var status = _host.Status;
            if (until(status))
            {
                return status;
            }

            try
            {
                await changed.WaitAsync(deadline).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }
    }

    /// <summary>Proposes a write on the leader (forwarding it there from a follower) and waits until it is applied.</summary>
    public async Task<WriteOutcome> WriteAsync(WriteRequest request, CancellationToken cancellationToken) =>
        (await WriteBatchAsync([request], cancellationToken).ConfigureAwait(false))[0];

    /// <summary>
    /// Proposes several writes together, in order (a pipeline's consecutive writes): on the leader they enter the
    /// log in this order and share its fsyncs; from a follower they travel in one forwarded request. One deadline
    /// covers them all. A suffix that certainly was not applied because leadership moved is retried on the new
    /// leader while the deadline allows. On the leader nothing but the proposals waits: the deadline is the host's
    /// (one timer for every pending write), and a cancellation source is made only to wait for a leader or forward.
    /// </summary>
    public Task<WriteOutcome[]> WriteBatchAsync(IReadOnlyList<WriteRequest> commands, CancellationToken cancellationToken)
    {
        long started = Stopwatch.GetTimestamp();
        return commands.Count > 0 && _host.Status.Leader == _host.Id && AllValid(commands)
            ? ProposeHereAsync(commands, started, cancellationToken)
            : WriteBatchCoreAsync(commands, started, cancellationToken);
    }

    private bool AllValid(IReadOnlyList<WriteRequest> commands)
    {
        for (int i = 0; i < commands.Count; i++)
        {
            if (commands[i].Validate(_options.ValueBytesMax) is not null)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The common case, in a frame of its own that holds little: every command valid and this node leading. The
    /// commands are proposed here and awaited once; only if leadership moved meanwhile (a suffix certainly not
    /// applied) does the general path take over, to retry that suffix on the new leader.
    /// </summary>
    private async Task<WriteOutcome[]> ProposeHereAsync(IReadOnlyList<WriteRequest> commands, long started, CancellationToken cancellationToken)
    {
        var here = StartHere(commands, started, cancellationToken);
        await here.WaitAsync().ConfigureAwait(false);
        return await FinishHereAsync(here).ConfigureAwait(false);
    }

    /// <summary>
    /// <see cref="WriteBatchAsync"/> in two halves, for a caller that awaits in a frame of its own (a RESP
    /// connection's batch, an HTTP request): when this node leads and every command is valid, proposes them and
    /// returns true; the caller awaits <see cref="WritesHere.WaitAsync"/>, then <see cref="FinishHereAsync"/>. That
    /// saves the write path's own state machine (about 150 bytes per write). False: call <see cref="WriteBatchAsync"/>.
    /// <paramref name="commands"/> must stay unchanged until the outcomes are in.
    /// </summary>
    internal bool TryStartHere(IReadOnlyList<WriteRequest> commands, CancellationToken cancellationToken, out WritesHere here)
    {
        long started = Stopwatch.GetTimestamp();
        if (commands.Count > 0 && _host.Status.Leader == _host.Id && AllValid(commands))
        {
            here = StartHere(commands, started, cancellationToken);
            return true;
        }

        here = default;
        return false;
    }

    /// <summary>The outcomes of writes from <see cref="TryStartHere"/> once <see cref="WritesHere.WaitAsync"/>
    /// completed: at once, unless leadership moved meanwhile and a suffix certainly not applied is retried on the
    /// new leader (the general path).</summary>
    internal ValueTask<WriteOutcome[]> FinishHereAsync(WritesHere here)
    {
        if (here.Batch is not { } batch)
        {
            return new ValueTask<WriteOutcome[]>(here.Outcomes); // nothing proposed: refused or out of time, not retried
        }

        var outcomes = batch.Outcomes!;
        FinishLocally(batch, outcomes, batch.Positions, batch.Proposed);
        return Array.Exists(outcomes, IsRetryable)
            ? new ValueTask<WriteOutcome[]>(WriteBatchCoreAsync(batch.Commands!, batch.Started, batch.CallerToken, outcomes))
            : new ValueTask<WriteOutcome[]>(outcomes);
    }

    private WritesHere StartHere(IReadOnlyList<WriteRequest> commands, long started, CancellationToken cancellationToken)
    {
        var outcomes = new WriteOutcome[commands.Count];
        var batch = StartLocally(commands, outcomes, Remaining(started), cancellationToken, out int[]? positions, out int proposed);
        if (batch is not null)
        {
            // What finishing needs rides on the batch, so that the caller's frame keeps two references across its
            // await, not seven (that frame is also every RESP read batch's).
            batch.Commands = commands;
            batch.Outcomes = outcomes;
            batch.Positions = positions;
            batch.Proposed = proposed;
            batch.Started = started;
            batch.CallerToken = cancellationToken;
        }

        return new WritesHere(batch, outcomes);
    }

    /// <summary>Writes proposed on this node by <see cref="TryStartHere"/>, not finished yet: the batch to await
    /// (null when nothing was proposed and <see cref="Outcomes"/> are final).</summary>
    internal readonly record struct WritesHere(ProposalBatch? Batch, WriteOutcome[] Outcomes)
    {
        /// <summary>Completes once every proposed write is answered; await once.</summary>
        public ValueTask WaitAsync() => Batch?.WaitAsync() ?? ValueTask.CompletedTask;
    }

    /// <param name="proposedHere">The outcomes of a first round <see cref="ProposeHereAsync"/> proposed on this node
    /// (every command valid), to go on from; null to start from the beginning.</param>
    private async Task<WriteOutcome[]> WriteBatchCoreAsync(IReadOnlyList<WriteRequest> commands, long started, CancellationToken cancellationToken, WriteOutcome[]? proposedHere = null)
    {
        var outcomes = proposedHere ?? new WriteOutcome[commands.Count];
        List<int>? valid = null; // null while every command so far is valid
        for (int i = 0; proposedHere is null && i < commands.Count; i++)
        {
            if (commands[i].Validate(_options.ValueBytesMax) is { } problem)
            {
                outcomes[i] = WriteOutcome.Failed(FailureKind.Invalid, problem);
                valid ??= [.. Enumerable.Range(0, i)];
            }
            else
            {
                valid?.Add(i);
            }
        }

        int count = valid?.Count ?? commands.Count;
        CancellationTokenSource? deadline = null;
        try
        {
            int from = 0;
            while (from < count)
            {
                WriteOutcome[] results;
                NodeId leader;
                if (proposedHere is not null)
                {
                    results = proposedHere;
                    leader = _host.Id;
                    proposedHere = null;
                }
                else
                {
                    var status = _host.Status;
                    if (status.Leader.IsNone)
                    {
                        deadline ??= Deadline(started, cancellationToken);
                        status = await WaitForLeaderAsync(deadline.Token).ConfigureAwait(false);
                        if (status is null)
                        {
                            var failure = cancellationToken.IsCancellationRequested
                                ? WriteOutcome.Failed(FailureKind.Timeout, "the request was cancelled before a leader was known (the client went away, or the node closed the connection after a leader change); not applied")
                                : WriteOutcome.Failed(FailureKind.NoLeader, "no leader elected within the request timeout (no quorum?); not applied");
                            for (int i = from; i < count; i++)
                            {
                                outcomes[valid?[i] ?? i] = failure;
                            }

                            return outcomes;
                        }
                    }

                    leader = status.Leader;
                    bool whole = valid is null && from == 0;
                    var round = whole ? commands : RoundOf(commands, valid, from, count);
                    results = whole ? outcomes : new WriteOutcome[round.Count];
                    if (leader == _host.Id)
                    {
                        var batch = StartLocally(round, results, Remaining(started), cancellationToken, out int[]? positions, out int proposed);
                        if (batch is not null)
                        {
                            await batch.WaitAsync().ConfigureAwait(false);
                            FinishLocally(batch, results, positions, proposed);
                        }
                    }
                    else
                    {
                        deadline ??= Deadline(started, cancellationToken);
                        var forwarded = await ForwardAsync(round, leader, deadline.Token).ConfigureAwait(false);
                        forwarded.CopyTo(results, 0);
                    }

                    if (!whole)
                    {
                        for (int i = 0; i < results.Length; i++)
                        {
                            outcomes[valid?[from + i] ?? from + i] = results[i];
                        }
                    }
                }

                // Leadership moved between looking and proposing: the suffix from the first such failure was certainly
                // not applied (every later entry failed the same way), so the new leader may take it.
                int retryFrom = Array.FindIndex(results, IsRetryable);
                if (retryFrom < 0 || Array.FindIndex(results, retryFrom, outcome => !IsRetryable(outcome)) >= 0
                    || cancellationToken.IsCancellationRequested || Remaining(started) <= TimeSpan.Zero)
                {
                    return outcomes;
                }

                from += retryFrom;
                deadline ??= Deadline(started, cancellationToken);
                var changed = Volatile.Read(ref _leaderChanged).Task;
                if (_host.Status.Leader == leader)
                {
                    try
                    {
                        await changed.WaitAsync(deadline.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return outcomes;
                    }
                }
            }

            return outcomes;
        }
        finally
        {
            deadline?.Dispose();
        }
    }

    /// <summary>The commands still to propose, from the <paramref name="from"/>-th valid one (a method of its own: a
    /// lambda capturing the arguments in the caller would allocate its closure on every call).</summary>
    private static WriteRequest[] RoundOf(IReadOnlyList<WriteRequest> commands, List<int>? valid, int from, int count) =>
        [.. Enumerable.Range(from, count - from).Select(i => commands[valid?[i] ?? i])];

    /// <summary>What is left of the request timeout of a request that started at <paramref name="started"/>.</summary>
    private TimeSpan Remaining(long started) => _host.RequestTimeout - Stopwatch.GetElapsedTime(started);

    /// <summary>A token that fires at the end of the request timeout counted from <paramref name="started"/>, or
    /// when the caller gives up.</summary>
    private CancellationTokenSource Deadline(long started, CancellationToken cancellationToken)
    {
        var source = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var remaining = Remaining(started);
        if (remaining > TimeSpan.Zero)
        {
            source.CancelAfter(remaining);
        }
        else
        {
            source.Cancel();
        }

        return source;
    }

    private static bool IsRetryable(WriteOutcome outcome) =>
        outcome.Status == WriteStatus.NotApplied && outcome.Failure == FailureKind.NoLeader;

    /// <summary>Proposes in order on this node (which believes it leads) and waits for all of them.</summary>
    public async Task<WriteOutcome[]> ProposeLocallyAsync(IReadOnlyList<WriteRequest> commands, CancellationToken cancellationToken)
    {
        var outcomes = new WriteOutcome[commands.Count];
        var batch = StartLocally(commands, outcomes, _host.RequestTimeout, cancellationToken, out int[]? positions, out int proposed);
        if (batch is not null)
        {
            await batch.WaitAsync().ConfigureAwait(false);
            FinishLocally(batch, outcomes, positions, proposed);
        }

        return outcomes;
    }

    /// <summary>The leader's clock for a new entry, never behind the log's: log time must not run backwards
    /// (docs/CACHE.md).</summary>
    public long LogTime() => Math.Max(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), _host.Cache.LastLogTimeUnixMs);

    /// <summary>
    /// Starts proposing in order on this node, which must believe it leads (also the leader's side of forwarding):
    /// the commands become entries at the leader's log time and go to the loop as one batch, answered together
    /// within <paramref name="timeout"/>. Returns the batch to await, then to pass to <see cref="FinishLocally"/>;
    /// null when nothing was proposed (every command refused, or no time left), with every outcome already set.
    /// <paramref name="positions"/> maps the batch's slots to command positions when some were refused.
    /// </summary>
    private ProposalBatch? StartLocally(IReadOnlyList<WriteRequest> commands, WriteOutcome[] outcomes, TimeSpan timeout, CancellationToken cancellationToken, out int[]? positions, out int count)
    {
        long logTime = LogTime();
        ReadOnlyMemory<byte>[] entries = new ReadOnlyMemory<byte>[commands.Count];
        positions = null; // entry i answers command positions[i], when some commands were refused
        count = 0;
        for (int i = 0; i < commands.Count; i++)
        {
            var (entry, error) = commands[i].ToEntry(logTime);
            if (entry is null)
            {
                outcomes[i] = WriteOutcome.Failed(FailureKind.Invalid, error!);
                positions ??= [.. Enumerable.Range(0, commands.Count)];
                continue;
            }

            if (positions is not null)
            {
                positions[count] = i;
            }

            entries[count++] = entry;
        }

        if (count == 0)
        {
            return null;
        }

        if (timeout <= TimeSpan.Zero)
        {
            for (int i = 0; i < count; i++)
            {
                outcomes[positions?[i] ?? i] = WriteOutcome.Failed(FailureKind.Timeout, ProposalSlot.NotProposedMessage);
            }

            return null;
        }

        return _host.StartProposals(count == entries.Length ? entries : entries.AsMemory(0, count).ToArray(), timeout, cancellationToken);
    }

    /// <summary>The outcomes of a batch from <see cref="StartLocally"/>, once it completed.</summary>
    private void FinishLocally(ProposalBatch batch, WriteOutcome[] outcomes, int[]? positions, int count)
    {
        bool applied = false;
        for (int i = 0; i < count; i++)
        {
            var slot = batch.Slots[i];
            if (slot.Error is { } error)
            {
                outcomes[positions?[i] ?? i] = FromHost(error);
            }
            else
            {
                outcomes[positions?[i] ?? i] = WriteOutcome.Applied(slot.Result);
                applied = true;
            }
        }

        if (applied)
        {
            Trace.Reached(FailoverStage.ProposalApplied);
        }
    }

    /// <summary>
    /// Waits until a read at this moment may be served from this node's state. While a leader is known, a
    /// linearizable or lease read awaits its batch's own outcome (<see cref="ReadBatcher"/>): one task shared by the
    /// batch, with no continuation of its own per read; each read resumes on a thread-pool work item of its own.
    /// The outcome's time is the leader's when it confirmed the index; <see cref="ReadTime"/> raises it to the log
    /// time applied here by the time the read is served.
    /// </summary>
    public Task<ReadOutcome> ReadBarrierAsync(ReadConsistency consistency, CancellationToken cancellationToken)
    {
        if (consistency == ReadConsistency.Stale)
        {
            return Task.FromResult(StaleOutcome());
        }

        // The round carries the request's deadline (it starts when this read joins it, or joined an open one);
        // a caller that goes away meanwhile is not waited for separately: the round ends within that deadline.
        var batcher = BatcherOf(consistency);
        return _host.Status.Leader.IsNone ? ReadAfterElectionAsync(batcher, cancellationToken) : batcher.WaitAsync();
    }

    /// <summary>
    /// The same barrier as <see cref="ReadBarrierAsync"/> for a linearizable or lease read that resumes in one of its
    /// batch's lanes (<see cref="ReadBatcher"/>): the reads of a lane are resumed one after another on one thread-pool
    /// work item, so a round of many reads queues a work item per core, not one per read, and no read needs an async
    /// frame of its own. False while no leader is known (the caller waits with <see cref="ReadBarrierAsync"/>).
    /// </summary>
    public bool TryJoinLane(ReadConsistency consistency, ReadBatcher.LaneRead read)
    {
        if (consistency == ReadConsistency.Stale || _host.Status.Leader.IsNone)
        {
            return false;
        }

        BatcherOf(consistency).JoinLane(read);
        return true;
    }

    private ReadOutcome StaleOutcome() => ReadOutcome.Ok with { ReadTimeUnixMs = _host.Cache.LastLogTimeUnixMs };

    private ReadBatcher BatcherOf(ReadConsistency consistency) => consistency == ReadConsistency.Lease ? _lease : _linearizable;

    private async Task<ReadOutcome> ReadAfterElectionAsync(ReadBatcher batcher, CancellationToken cancellationToken)
    {
        using (var deadline = Deadline(cancellationToken))
        {
            if (await WaitForLeaderAsync(deadline.Token).ConfigureAwait(false) is null)
            {
                return new ReadOutcome(FailureKind.NoLeader, "no leader elected within the request timeout (no quorum?)");
            }
        }

        return await batcher.WaitAsync().ConfigureAwait(false);
    }

    /// <summary>The time a read that passed <paramref name="barrier"/> is served at (docs/CACHE.md): the leader's
    /// time when it confirmed the read index, or for a stale read this node's last applied log time; never behind
    /// the log time this node has applied. This node's own clock plays no part.</summary>
    public long ReadTime(ReadOutcome barrier) => Math.Max(barrier.ReadTimeUnixMs, _host.Cache.LastLogTimeUnixMs);

    private async Task<WriteOutcome[]> ForwardAsync(IReadOnlyList<WriteRequest> commands, NodeId leader, CancellationToken deadline)
    {
        WriteOutcome[] All(WriteOutcome outcome) => [.. commands.Select(_ => outcome)];
        if (!_options.ForwardWrites)
        {
            return All(WriteOutcome.Failed(FailureKind.ForwardingDisabled, "this node is a follower and does not forward writes", leader: leader));
        }

        string address = _host.Members.Find(leader)?.HttpAddress ?? string.Empty;
        if (address.Length == 0)
        {
            string? known = await LeaderAddressAsync(leader, deadline).ConfigureAwait(false);
            if (known is null)
            {
                // Leadership moved while this node waited: certainly not applied, so the caller retries on the new leader.
                return All(WriteOutcome.Failed(FailureKind.NoLeader, $"node {leader} stopped leading before its HTTP address was known here; not applied", leader: leader));
            }

            if (known.Length == 0)
            {
                return All(WriteOutcome.Failed(FailureKind.LeaderUnreachable, $"the leader (node {leader}) has not published its HTTP address yet; not applied", leader: leader));
            }

            address = known;
        }

        using var message = HttpApi.ForwardRequest("POST", new Uri($"{_options.HttpScheme}://{address}{ProposePath}", UriKind.Absolute), WriteRequest.EncodeAll(commands), "application/octet-stream");
        message.Headers.TryAddWithoutValidation(HttpApi.ForwardedHeader, _host.Id.ToString());
        using var client = _clients.CreateClient();
        client.Timeout = Timeout.InfiniteTimeSpan;
        HttpResponseMessage response;
        try
        {
            Trace.Reached(FailoverStage.ForwardSent);
            response = await client.SendAsync(message, deadline).ConfigureAwait(false);
            Trace.Reached(FailoverStage.ForwardAnswered);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            ServerLog.ForwardFailed(_logger, address, e.Message);
            bool neverSent = e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError };
            return All(neverSent
                ? WriteOutcome.Failed(FailureKind.LeaderUnreachable, $"leader {address} unreachable; not applied", leader: leader)
                : WriteOutcome.Failed(FailureKind.Timeout, $"forwarding to leader {address} failed: {e.Message}; outcome unknown", outcomeUnknown: true, leader: leader));
        }

        using (response)
        {
            byte[] body;
            try
            {
                body = await response.Content.ReadAsByteArrayAsync(deadline).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
            {
                return All(WriteOutcome.Failed(FailureKind.Timeout, $"the leader's answer was cut off: {e.Message}; outcome unknown", outcomeUnknown: true, leader: leader));
            }

            if (response.IsSuccessStatusCode)
            {
                ForwardedResult[]? results = null;
                try
                {
                    results = JsonSerializer.Deserialize(body, CommandJson.Default.ForwardedResultArray);
                }
                catch (JsonException)
                {
                }

                if (results is null || results.Length != commands.Count)
                {
                    return All(WriteOutcome.Failed(FailureKind.Timeout, "the leader's answer was malformed; outcome unknown", outcomeUnknown: true, leader: leader));
                }

                await CatchUpAsync(response.Headers, deadline).ConfigureAwait(false);
                Trace.Reached(FailoverStage.ForwardCaughtUp);
                return [.. results.Select(r => r.ToOutcome(leader))];
            }

            // The leader's answer names its outcome in headers: typed values, never a message to match.
            string outcome = response.Headers.TryGetValues(HttpApi.OutcomeHeader, out var values) ? values.FirstOrDefault() ?? "unknown" : "unknown";
            string detail = TryReadError(body) ?? $"leader answered {(int)response.StatusCode}";
            var failure = response.Headers.TryGetValues(FailureHeader, out var kinds) && Enum.TryParse<FailureKind>(kinds.FirstOrDefault(), out var kind)
                ? kind
                : FailureKind.LeaderUnreachable;
            return All(WriteOutcome.Failed(failure, detail, outcomeUnknown: outcome != "not-applied", leader: leader));
        }
    }

    /// <summary>
    /// The HTTP address of <paramref name="leader"/>. Right after an election a follower knows its new leader's id
    /// before the entry with the leader's address (AddressAnnouncement) has reached it: then it waits, woken by each
    /// change of the member book or of leadership (never polled), until the address is known (returned), leadership
    /// moves (null: the write goes to the new leader), or the deadline passes (empty: the caller answers that the
    /// address is not published).
    /// </summary>
    public async Task<string?> LeaderAddressAsync(NodeId leader, CancellationToken deadline)
    {
        while (true)
        {
            var changed = Volatile.Read(ref _addressesChanged).Task;
            if (_host.Members.Find(leader)?.HttpAddress is { Length: > 0 } address)
            {
                return address;
            }

            if (_host.Status.Leader != leader)
            {
                return null;
            }

            try
            {
                await changed.WaitAsync(deadline).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return string.Empty;
            }
        }
    }

    private void SignalAddressesChanged() =>
        Interlocked.Exchange(ref _addressesChanged, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>The header in which the leader names the <see cref="FailureKind"/> of a refused forwarded command.</summary>
    public const string FailureHeader = "X-Stcache-Failure";

    /// <summary>Read-your-writes on the node the client wrote through (see <see cref="HttpApi"/>'s catch-up).</summary>
    private async Task CatchUpAsync(HttpResponseHeaders headers, CancellationToken cancellationToken)
    {
        if (!headers.TryGetValues(HttpApi.AppliedHeader, out var values)
            || !ulong.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong applied))
        {
            return;
        }

        try
        {
            await _host.WaitForAppliedAsync(new LogIndex(applied), _host.ElectionTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (RaftHostException e)
        {
            ServerLog.ForwardCatchUpFailed(_logger, e.Message);
        }
        catch (OperationCanceledException)
        {
            // Committed and applied on the leader: the answer goes out even if this node lags.
        }
    }

    private static string? TryReadError(byte[] body)
    {
        try
        {
            return JsonSerializer.Deserialize(body, ApiJson.Default.ErrorView)?.Error;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static WriteOutcome FromHost(RaftHostException e) =>
        WriteOutcome.Failed(KindOf(e.Kind), e.Message, e.OutcomeUnknown, e.Leader);

    public static FailureKind KindOf(HostErrorKind kind) => kind switch
    {
        HostErrorKind.NotLeader or HostErrorKind.NoLeader or HostErrorKind.Lost => FailureKind.NoLeader,
        HostErrorKind.Timeout => FailureKind.Timeout,
        HostErrorKind.Overloaded => FailureKind.Overloaded,
        HostErrorKind.ShuttingDown => FailureKind.ShuttingDown,
        _ => FailureKind.Invalid,
    };
}

/// <summary>
/// One confirmation round for every read waiting at that moment. Reads join the open batch. At most one batch is in
/// the Raft loop's hands at a time: a batch opened while none is goes to the loop at once; one opened while a round
/// is in flight collects reads until that round is answered, and goes to the loop then, from the answer's own
/// thread (the loop's), so the next round starts without a thread hop. The loop closes a batch as it takes it,
/// just before asking for the round: every read of a batch arrived before its round started, and a read arriving
/// later joins the next batch, never a round begun before it arrived (which could miss a write acknowledged in
/// between). A batch's deadline runs from its first read, so no read waits longer than the request timeout. A read
/// costs one short lock; it awaits its batch's outcome, completed as the round is answered, with no continuation in
/// between and no exception per read when the round fails.
/// </summary>
internal sealed class ReadBatcher
{
    private readonly Func<Action, ReadRequest> _newRequest;
    private readonly Action<ReadRequest, Action> _start;
    private readonly Lock _lock = new();
    private readonly int _lanes;
    private Batch? _open;
    private Batch? _inFlight;
    private long _rounds;

    /// <param name="newRequest">A request whose deadline runs, calling the action once answered.</param>
    /// <param name="start">Hands a request to the loop, with the action to run as the loop takes it.</param>
    /// <param name="lanes">How many thread-pool work items resume a batch's reads that wait in lanes (default: one per
    /// core). Such reads join the lanes in turn; each lane's reads are resumed one after another on its work item, so
    /// a round of many reads queues a few work items, not one per read.</param>
    public ReadBatcher(Func<Action, ReadRequest> newRequest, Action<ReadRequest, Action> start, int lanes = 0)
    {
        _newRequest = newRequest;
        _start = start;
        _lanes = lanes > 0 ? lanes : Environment.ProcessorCount;
    }

    /// <summary>Rounds handed to the loop, for tests and metrics.</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>Joins the open batch (opening one if none is); answers with its round's outcome: the leader's time
    /// when it confirmed the read index, or the failure. The read resumes on a work item of its own (RESP and the
    /// other HTTP reads: measured slower in lanes in session 9).</summary>
    public Task<ReadOutcome> WaitAsync()
    {
        Batch? submit;
        TaskCompletionSource<ReadOutcome> wait;
        lock (_lock)
        {
            submit = Join(out var open);
            wait = open.Shared();
        }

        if (submit is not null)
        {
            Submit(submit);
        }

        return wait.Task;
    }

    /// <summary>
    /// Joins the open batch as <see cref="WaitAsync"/> does, in one of its lanes: once the round is answered, each
    /// lane's reads are resumed (<see cref="LaneRead.Resume"/>) one after another on one work item of the lane. (Reads
    /// awaiting a task shared by the lane would not be: of several continuations on one task, .NET runs only the
    /// last inline and queues every other one to the thread pool.)
    /// </summary>
    public void JoinLane(LaneRead read)
    {
        Batch? submit;
        lock (_lock)
        {
            submit = Join(out var open);
            open.AddToLane(read, _lanes);
        }

        if (submit is not null)
        {
            Submit(submit);
        }
    }

    /// <summary>The open batch, opened if none is (the lock held); returns the batch to hand to the loop, if any.</summary>
    private Batch? Join(out Batch open)
    {
        Batch? submit = null;
        if (_open is null)
        {
            var batch = new Batch(this);
            batch.Request = _newRequest(batch.Finished);
            _open = batch;
            if (_inFlight is null)
            {
                submit = _inFlight = batch;
            }
        }

        open = _open;
        return submit;
    }

    private void Submit(Batch batch)
    {
        Interlocked.Increment(ref _rounds);
        _start(batch.Request, batch.Taken);
    }

    /// <summary>A read waiting in a lane: resumed with its round's outcome on the lane's work item, in the order the
    /// lane's reads joined. <see cref="Resume"/> must neither block nor throw (it runs on the lane's work item); the
    /// read may be reused once it has been resumed.</summary>
    internal abstract class LaneRead
    {
        /// <summary>The next read of the same lane (the batcher's lock held while the batch is open).</summary>
        internal LaneRead? Next { get; set; }

        public abstract void Resume(ReadOutcome outcome);
    }

    private sealed class Batch(ReadBatcher owner)
    {
        // The reads waiting in lanes: each lane a chain of waiters in the order they joined (first and last, linked
        // through the waiters, so no array per lane), opened as reads join; answered once the round is, each lane
        // from a pool work item of its own that resumes its reads in turn. Guarded by the owner's lock until the
        // batch is finished.
        private LaneRead?[]? _first;
        private LaneRead?[]? _last;
        private TaskCompletionSource<ReadOutcome>? _shared;
        private int _joined;

        public ReadRequest Request { get; set; } = null!;

        /// <summary>The next read joins the next lane in turn (the owner's lock held).</summary>
        public void AddToLane(LaneRead read, int lanes)
        {
            _first ??= new LaneRead?[lanes];
            _last ??= new LaneRead?[lanes];
            int index = _joined++ % lanes;
            read.Next = null;
            if (_last[index] is { } last)
            {
                last.Next = read;
            }
            else
            {
                _first[index] = read;
            }

            _last[index] = read;
        }

        /// <summary>What the reads outside the lanes await, each resumed from a work item of its own (the owner's lock
        /// held).</summary>
        public TaskCompletionSource<ReadOutcome> Shared() =>
            _shared ??= new TaskCompletionSource<ReadOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The loop took the batch: later reads join the next.</summary>
        public void Taken()
        {
            lock (owner._lock)
            {
                if (ReferenceEquals(owner._open, this))
                {
                    owner._open = null;
                }
            }
        }

        /// <summary>The batch's round was answered (or its deadline passed): the waiting batch goes to the loop.</summary>
        public void Finished()
        {
            Batch? submit = null;
            lock (owner._lock)
            {
                if (ReferenceEquals(owner._open, this))
                {
                    owner._open = null;
                }

                if (ReferenceEquals(owner._inFlight, this))
                {
                    owner._inFlight = owner._open;
                    submit = owner._open;
                }
            }

            if (submit is not null)
            {
                owner.Submit(submit);
            }

            // No read joins a finished batch (it is neither open nor in flight), so the lanes are fixed now.
            var outcome = OutcomeOf(Request.Completion.Task);
            _shared?.TrySetResult(outcome);
            foreach (var first in _first ?? [])
            {
                if (first is not null)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(static state =>
                    {
                        // Each link is read before its read is resumed: a resumed read may be reused at once.
                        for (var read = state.First; read is not null;)
                        {
                            var next = read.Next;
                            read.Resume(state.Outcome);
                            read = next;
                        }
                    }, (First: first, Outcome: outcome), preferLocal: false);
                }
            }
        }

        private static ReadOutcome OutcomeOf(Task<ReadPoint> answered) => answered.Status switch
        {
            TaskStatus.RanToCompletion => ReadOutcome.Ok with { ReadTimeUnixMs = answered.Result.TimeUnixMs },
            TaskStatus.Faulted when answered.Exception!.InnerException is RaftHostException e => new ReadOutcome(CommandService.KindOf(e.Kind), e.Message),
            _ => new ReadOutcome(FailureKind.Timeout, "read could not be confirmed within the request timeout"),
        };
    }
}
