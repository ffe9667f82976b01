using System.Diagnostics;
using System.Globalization;

namespace Stcache.Faults.Tests.Workload;

/// <summary>
/// The final reads after healing, under one deadline for them all. Right after the heal the cluster may still be
/// electing, so a read can get an error that says nothing about the data (no leader yet, 503, a timeout, a refused
/// connection): such a read is asked again until it is answered or the deadline passes, and then it is reported as
/// unanswered, never as a lost write. A node waits for a leader within its own request timeout before it answers
/// 503, so the pause between attempts only paces errors that come back at once (a client outside the cluster has no
/// event to await).
/// </summary>
public sealed class FinalReads(TimeSpan budget)
{
    private static readonly TimeSpan s_firstPause = TimeSpan.FromMilliseconds(20);
    private static readonly TimeSpan s_longestPause = TimeSpan.FromMilliseconds(500);

    private readonly Stopwatch _started = Stopwatch.StartNew();
    private int _retried;

    /// <summary>Attempts asked again after an error.</summary>
    public int Retried => Volatile.Read(ref _retried);

    /// <summary>What an unanswered read waited for, for its failure message.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"asking again after every error until the final reads' {budget.TotalSeconds:F0} s deadline ({_started.Elapsed.TotalSeconds:F1} s since they began)");

    /// <summary>An HTTP read until it is answered (200 or 404): the last attempt.</summary>
    public Task<RecordedOp> UntilAnsweredAsync(Func<Task<RecordedOp>> read) =>
        UntilAnsweredAsync(read, op => op.Outcome == OpOutcome.Ok);

    /// <summary><paramref name="read"/> until <paramref name="answered"/> holds for its result or the deadline passes:
    /// the last attempt.</summary>
    public async Task<T> UntilAnsweredAsync<T>(Func<Task<T>> read, Func<T, bool> answered)
    {
        var pause = s_firstPause;
        while (true)
        {
            var result = await read();
            if (answered(result) || _started.Elapsed >= budget)
            {
                return result;
            }

            Interlocked.Increment(ref _retried);
            await Task.Delay(pause);
            pause = pause * 2 < s_longestPause ? pause * 2 : s_longestPause;
        }
    }
}
