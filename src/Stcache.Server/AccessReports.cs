using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// Sends a follower's access reports (the keys its reads found, see docs/CACHE.md) to the leader as one
/// <see cref="WriteCommand.Access"/> write each, through the forwarding path writes take. At most one report is in
/// flight: one that arrives meanwhile is dropped (a report only refines LRU/LFU data; losing one costs precision,
/// never correctness).
/// </summary>
internal sealed class AccessReports
{
    private readonly CommandService _service;
    private int _inFlight;

    private AccessReports(CommandService service) => _service = service;

    public static void Attach(RaftHost host, CommandService service)
    {
        var reports = new AccessReports(service);
        host.AccessReported += reports.OnReport;
    }

    private void OnReport(NodeId leader, IReadOnlyList<byte[]> keys)
    {
        if (Interlocked.CompareExchange(ref _inFlight, 1, 0) != 0)
        {
            return;
        }

        _ = Task.Run(async () =>
        {
            try
            {
                await _service.WriteAsync(WriteRequest.Of(WriteCommand.Access(keys)), CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                Volatile.Write(ref _inFlight, 0);
            }
        });
    }
}
