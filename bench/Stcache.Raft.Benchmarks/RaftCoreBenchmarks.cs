using BenchmarkDotNet.Attributes;

namespace Stcache.Raft.Benchmarks;

/// <summary>
/// Committed proposals per second through a 3-node in-memory cluster, 128-byte proposals batched 64 per
/// <see cref="RaftNode.Propose(IReadOnlyList{ReadOnlyMemory{byte}})"/>. Each reported operation is ONE proposal:
/// Mean is nanoseconds per committed proposal and Allocated is bytes per committed proposal (the payload buffers
/// are allocated once in setup, so every byte reported is the core's and the driver's overhead).
/// </summary>
[MemoryDiagnoser]
public class RaftCoreBenchmarks
{
    public const int PayloadBytes = 128;
    public const int BatchSize = 64;
    public const int BatchesPerInvoke = 32;

    private InMemoryCluster _cluster = null!;

    public InMemoryCluster Cluster => _cluster;
    private ReadOnlyMemory<byte>[] _batch = null!;

    [GlobalSetup]
    public void Setup()
    {
        _cluster = new InMemoryCluster();
        _batch = new ReadOnlyMemory<byte>[BatchSize];
        for (int i = 0; i < BatchSize; i++)
        {
            var payload = new byte[PayloadBytes];
            payload.AsSpan().Fill((byte)i);
            _batch[i] = payload;
        }

        // Warm the log past the first compaction so steady state is measured.
        for (int i = 0; i < 1_000; i++)
        {
            _cluster.ProposeAndCommit(_batch);
        }
    }

    [Benchmark(OperationsPerInvoke = BatchSize * BatchesPerInvoke)]
    public int CommitBatchedProposals()
    {
        int committed = 0;
        for (int i = 0; i < BatchesPerInvoke; i++)
        {
            committed += _cluster.ProposeAndCommit(_batch);
        }

        return committed;
    }
}
