using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// The clock of an in-process <see cref="RaftHost"/>, moved by the test: a <see cref="FakeTimeProvider"/> that
/// advances one Raft tick at a time, and only while the test waits for something that needs time (an election, a
/// storage retry, a request deadline). Nothing waits for real timer ticks, and a busy machine cannot make ticks
/// pile up: the next tick is given once the host has taken the last one, or at once while the host waits on this
/// very clock for a storage retry (it takes no ticks then).
/// </summary>
internal sealed class FakeRaftClock
{
    // How long (real time) to let the host take a tick before giving the next one anyway.
    private static readonly TimeSpan s_tickTaken = TimeSpan.FromMilliseconds(50);

    private long _advancedTicks;

    public FakeRaftClock(TimeSpan tick)
    {
        Tick = tick;
        Time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    }

    public FakeTimeProvider Time { get; }

    public TimeSpan Tick { get; }

    /// <summary>Advances a tick at a time until <paramref name="task"/> completes, then returns its result.</summary>
    public async Task<T> RunUntilAsync<T>(RaftHost host, Task<T> task, TimeSpan? limit = null)
    {
        await AdvanceUntilAsync(host, task, limit);
        return await task;
    }

    /// <summary>
    /// Advances a tick at a time until <paramref name="task"/> completes; fails after <paramref name="limit"/> of
    /// fake time (a minute by default). Returns at once, without advancing, if the task needs no time.
    /// </summary>
    public async Task AdvanceUntilAsync(RaftHost host, Task task, TimeSpan? limit = null)
    {
        var budget = limit ?? TimeSpan.FromMinutes(1);
        var advanced = TimeSpan.Zero;
        await Task.WhenAny(task, Task.Delay(1));
        while (!task.IsCompleted)
        {
            Assert.True(advanced < budget, $"still waiting after {advanced.TotalSeconds:F1} s of fake time");
            Time.Advance(Tick);
            advanced += Tick;
            long due = ++_advancedTicks;
            var given = Stopwatch.StartNew();
            while (!task.IsCompleted && host.Status.Ticks + host.Status.TicksSkipped < due && !host.StorageFailing && given.Elapsed < s_tickTaken)
            {
                await Task.WhenAny(task, Task.Delay(1));
            }
        }
    }

    /// <summary>Ticks a single-voter host until it leads.</summary>
    public async Task ElectAsync(RaftHost host)
    {
        var leads = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.LeadershipChanged += change =>
        {
            if (change.IsLeader)
            {
                leads.TrySetResult();
            }
        };
        if (!host.Status.IsLeader)
        {
            await AdvanceUntilAsync(host, leads.Task);
        }
    }
}
