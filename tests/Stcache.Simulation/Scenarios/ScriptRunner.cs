using System.Globalization;
using System.Text;
using Stcache.Raft;
using Stcache.Simulation.Sim;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// Runs scenario scripts in the style of etcd-io/raft's testdata: blocks separated by blank lines, each block
/// one or more commands, a line <c>----</c>, then the expected output. A behaviour change shows up as a readable
/// diff. With SIM_REWRITE=1 the runner writes the actual output back into the script instead of comparing.
/// </summary>
internal sealed class ScriptRunner
{
    private readonly Dictionary<string, ScenarioCluster.ReadTracker> _reads = new(StringComparer.Ordinal);
    private ScenarioCluster? _cluster;

    private ScenarioCluster Cluster => _cluster ?? throw new InvalidOperationException("add-nodes first");

    public static (string Expected, string Actual) Run(string path)
    {
        var runner = new ScriptRunner();
        string expected = File.ReadAllText(path).ReplaceLineEndings("\n");
        var actual = new StringBuilder();
        foreach (var block in expected.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = block.Split('\n');
            int separator = Array.IndexOf(lines, "----");
            var commands = (separator < 0 ? lines : lines[..separator]).Where(l => l.Length > 0).ToList();
            var output = new List<string>();
            foreach (var command in commands)
            {
                if (command.StartsWith('#'))
                {
                    continue;
                }

                output.AddRange(runner.Execute(command));
            }

            actual.Append(string.Join('\n', commands)).Append("\n----\n");
            actual.Append(output.Count == 0 ? "ok" : string.Join('\n', output)).Append("\n\n");
        }

        return (expected.TrimEnd() + "\n", actual.ToString().TrimEnd() + "\n");
    }

    private IEnumerable<string> Execute(string line)
    {
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var options = words.Skip(1).Where(w => w.Contains('=', StringComparison.Ordinal))
            .ToDictionary(w => w[..w.IndexOf('=', StringComparison.Ordinal)], w => w[(w.IndexOf('=', StringComparison.Ordinal) + 1)..], StringComparer.Ordinal);
        var args = words.Skip(1).Where(w => !w.Contains('=', StringComparison.Ordinal)).ToArray();
        int Arg(int i) => int.Parse(args[i], CultureInfo.InvariantCulture);
        bool Flag(string name, bool fallback) => options.TryGetValue(name, out string? v) ? bool.Parse(v) : fallback;
        int Number(string name, int fallback) => options.TryGetValue(name, out string? v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

        switch (words[0])
        {
            case "add-nodes":
                int inflight = Number("inflight", 256);
                _cluster = new ScenarioCluster(
                    Arg(0),
                    preVote: Flag("pre-vote", true),
                    checkQuorum: Flag("check-quorum", true),
                    configure: config => config with { InflightMessagesMax = inflight },
                    snapshotIntervalEntries: Number("snapshot-every", 0),
                    snapshotTrailingEntries: (ulong)Number("trailing", 0));
                return [];
            case "add-node":
                Cluster.AddHost(Arg(0)).Start();
                return [];
            case "campaign":
                Cluster.Node(Arg(0)).Campaign();
                Cluster[Arg(0)].Process();
                return [];
            case "stabilize":
                Cluster.Stabilize();
                return [];
            case "tick-all":
                Cluster.TickAll(args.Length > 0 ? Arg(0) : 1);
                return [];
            case "isolate":
                Cluster.Isolate(Arg(0));
                return [];
            case "heal":
                Cluster.Heal();
                return [];
            case "crash":
                Cluster.Crash(Arg(0));
                return [];
            case "restart":
                Cluster.Restart(Arg(0));
                return [];
            case "propose":
                var write = Cluster.Set(Arg(0), args[1], args[2]);
                return [write.Result.IsAccepted ? $"accepted term={write.Result.Term} index={write.Result.FirstIndex}" : write.Result.Status.ToString()];
            case "read":
                var read = Cluster.Read(Arg(0), args[1], lease: Flag("lease", false));
                _reads[args.Length > 2 ? args[2] : $"r{_reads.Count + 1}"] = read;
                return [read.Status.ToString()];
            case "reads":
                return _reads.Select(r => r.Value.Done ? $"{r.Key}: {r.Value.Value ?? "absent"}" : $"{r.Key}: pending");
            case "get":
                return [Cluster[Arg(0)].Machine.Get(args[1]) ?? "absent"];
            case "transfer":
                var transfer = Cluster.Node(Arg(0)).TransferLeadership(new NodeId((ulong)Arg(1)));
                Cluster[Arg(0)].Process();
                return [transfer.ToString()];
            case "conf-change":
                var type = args[1] switch
                {
                    "add-learner" => ConfChangeType.AddLearner,
                    "add-voter" => ConfChangeType.AddVoter,
                    _ => ConfChangeType.RemoveNode,
                };
                return [Cluster.ProposeConfChange(Arg(0), type, Arg(2)).Status.ToString()];
            case "stop":
                Cluster[Arg(0)].Stop();
                return [];
            case "status":
                return Cluster.Hosts.Select(h => h.Value.Node is { } n
                    ? string.Create(CultureInfo.InvariantCulture, $"n{h.Key} {n.Role} term={n.Term} leader={n.Leader} commit={n.CommitIndex} applied={h.Value.Applied} last={h.Value.Log.LastIndex} {n.ConfState}")
                    : $"n{h.Key} {(h.Value.IsStopped ? "stopped" : "down")}");
            default:
                throw new InvalidOperationException($"unknown command '{words[0]}'");
        }
    }
}

public sealed class ScriptScenarioTests
{
    public static TheoryData<string> Scripts()
    {
        var data = new TheoryData<string>();
        foreach (var path in Directory.GetFiles(ScriptDirectory(), "*.txt").OrderBy(p => p, StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(path));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Scripts))]
    public void Script(string name)
    {
        string path = Path.Combine(ScriptDirectory(), name);
        var (expected, actual) = ScriptRunner.Run(path);
        if (Environment.GetEnvironmentVariable("SIM_REWRITE") == "1")
        {
            // Rewrite the source copy, not the one in bin/.
            File.WriteAllText(Path.Combine(SourceScriptDirectory(), name), actual);
            return;
        }

        Assert.Equal(expected, actual);
    }

    private static string ScriptDirectory() => Path.Combine(AppContext.BaseDirectory, "Scenarios", "Scripts");

    private static string SourceScriptDirectory([System.Runtime.CompilerServices.CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "Scripts");
}
