using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Running;
using Stcache.Raft.Benchmarks;

// `--quick [seconds]` runs a plain Stopwatch loop (seconds, not minutes) for a first look or a profile;
// anything else goes to BenchmarkDotNet (e.g. --filter '*').
if (args.Length > 0 && args[0] == "--quick")
{
    double seconds = args.Length > 1 ? double.Parse(args[1], CultureInfo.InvariantCulture) : 5;
    var benchmark = new RaftCoreBenchmarks();
    benchmark.Setup();
    for (int i = 0; i < 200; i++)
    {
        benchmark.CommitBatchedProposals();
    }

    long proposals = 0;
    long readies = benchmark.Cluster.ReadyCount;
    long messages = benchmark.Cluster.MessageCount;
    long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
    int gen0Before = GC.CollectionCount(0);
    var clock = Stopwatch.StartNew();
    while (clock.Elapsed.TotalSeconds < seconds)
    {
        proposals += benchmark.CommitBatchedProposals();
    }

    clock.Stop();
    long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{proposals} proposals in {clock.Elapsed.TotalSeconds:0.00} s: {proposals / clock.Elapsed.TotalSeconds:0} committed proposals/s, {(double)allocated / proposals:0.0} allocated B/proposal, {GC.CollectionCount(0) - gen0Before} gen0 GCs"));
    double batches = proposals / (double)RaftCoreBenchmarks.BatchSize;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"per batch of {RaftCoreBenchmarks.BatchSize}: {(benchmark.Cluster.ReadyCount - readies) / batches:0.0} Readies, {(benchmark.Cluster.MessageCount - messages) / batches:0.0} messages"));
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(RaftCoreBenchmarks).Assembly).Run(args);
