using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Harness;

/// <summary>One stcached process: its addresses, data directory and output; killed, paused and restarted at will.</summary>
public sealed class NodeProcess : IDisposable
{
    private const int OutputLinesMax = 400;

    private static readonly string? s_logDirectory = CreateLogDirectory();

    private readonly Lock _lock = new();
    private readonly Queue<string> _output = new();
    private Func<IReadOnlyList<string>> _arguments;
    private Process? _process;
    private bool _paused;

    public NodeProcess(string name, ulong id, int httpPort, int raftPort, string dataDirectory, Func<IReadOnlyList<string>> arguments)
    {
        Name = name;
        MemberName = name;
        Id = id;
        HttpPort = httpPort;
        RaftPort = raftPort;
        DataDirectory = dataDirectory;
        _arguments = arguments;
    }

    /// <summary>The slot's name: fixed for its ports, proxies and data directory.</summary>
    public string Name { get; }

    /// <summary>The Raft id it runs as now; changes when the node is wiped and comes back as a new member.</summary>
    public ulong Id { get; private set; }

    /// <summary>The member name it runs as now (the slot name, or the slot name plus a reincarnation suffix).</summary>
    public string MemberName { get; private set; } = string.Empty;

    /// <summary>How many times the node was wiped and came back as a new member.</summary>
    public int Incarnation { get; private set; }

    public int HttpPort { get; }

    public int RaftPort { get; }

    public string HttpAddress => FreePorts.Address(HttpPort);

    public string RaftAddress => FreePorts.Address(RaftPort);

    /// <summary>The slot's Redis-protocol port; the node listens on it when the cluster runs with RESP.</summary>
    public int RespPort { get; } = FreePorts.Next();

    public string RespAddress => FreePorts.Address(RespPort);

    public string DataDirectory { get; }

    public bool IsRunning => _process is { HasExited: false };

    public bool IsPaused => _paused && IsRunning;

    public int Starts { get; private set; }

    public int? ExitCode => _process is { HasExited: true } p ? p.ExitCode : null;

    public Uri BaseUri => new("http://" + HttpAddress);

    public void SetArguments(Func<IReadOnlyList<string>> arguments) => _arguments = arguments;

    public void Start()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException($"{Name} is already running");
        }

        var info = new ProcessStartInfo(StcachedBinary.FileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(DataDirectory)!,
        };
        // STCACHE_TEST_NODE_ARGS: flags every node gets too (as in the integration tests' Node), e.g. --wal-pipeline=true.
        var common = (Environment.GetEnvironmentVariable("STCACHE_TEST_NODE_ARGS") ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        foreach (string argument in StcachedBinary.PrefixArguments.Concat(_arguments()).Concat(common))
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment[TestNodeSettings.WalSegmentSizeVariable] = TestNodeSettings.WalSegmentSize;
        info.Environment["DOTNET_gcServer"] = "0";
        info.Environment["DOTNET_TieredPGO"] = "0";
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        ProcessReaper.Register(process);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        _paused = false;
        Starts++;
        Append($"---- started pid {process.Id.ToString(CultureInfo.InvariantCulture)}: {string.Join(' ', info.ArgumentList)}");
    }

    /// <summary>kill -9: no shutdown, no flush beyond what the node already made durable.</summary>
    public void Kill()
    {
        if (_process is { } process)
        {
            ProcessReaper.Kill(process);
            Append("---- killed");
        }

        _paused = false;
    }

    /// <summary>SIGSTOP: the process is frozen, its sockets stay open.</summary>
    public void Pause()
    {
        if (_process is { HasExited: false } process)
        {
            ProcessReaper.Pause(process);
            _paused = true;
        }
    }

    public void Resume()
    {
        if (_process is { HasExited: false } process)
        {
            ProcessReaper.Resume(process);
        }

        _paused = false;
    }

    /// <summary>Waits for the process to exit on its own (for nodes expected to refuse to start).</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        var process = _process ?? throw new InvalidOperationException("not started");
        using var cancel = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(cancel.Token);
        return process.ExitCode;
    }

    /// <summary>The member name of a later incarnation (after a wipe) of slot <paramref name="name"/>.</summary>
    public static string IncarnationName(string name, int incarnation) =>
        incarnation == 0 ? name : name + "-r" + incarnation.ToString(CultureInfo.InvariantCulture);

    /// <summary>After a wipe: the next start runs as a new member with a new name and id.</summary>
    public void BecomeNewMember(ulong id)
    {
        Incarnation++;
        MemberName = IncarnationName(Name, Incarnation);
        Id = id;
    }

    public void WipeDataDirectory()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("wipe a stopped node only");
        }

        if (Directory.Exists(DataDirectory))
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
    }

    public string Output()
    {
        lock (_lock)
        {
            return string.Join('\n', _output);
        }
    }

    public string Tail(int lines)
    {
        lock (_lock)
        {
            return string.Join('\n', _output.Skip(Math.Max(0, _output.Count - lines)));
        }
    }

    public void Dispose() => Kill();

    public override string ToString() => $"{MemberName} (id {Id}, http {HttpPort}, raft {RaftPort})";

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            if (s_logDirectory is not null)
            {
                // Whole logs for diagnosis (FAULTS_LOG_DIR): the in-memory tail keeps only the last lines.
                File.AppendAllText(Path.Combine(s_logDirectory, Name + ".log"), DateTime.UtcNow.ToString("HH:mm:ss.fff ", CultureInfo.InvariantCulture) + line + "\n");
            }

            _output.Enqueue(line);
            while (_output.Count > OutputLinesMax)
            {
                _output.Dequeue();
            }
        }
    }

    private static string? CreateLogDirectory()
    {
        string? directory = Environment.GetEnvironmentVariable("FAULTS_LOG_DIR");
        if (string.IsNullOrEmpty(directory))
        {
            return null;
        }

        Directory.CreateDirectory(directory);
        return directory;
    }

    public static string Describe(IEnumerable<NodeProcess> nodes, int lines)
    {
        var text = new StringBuilder();
        foreach (var node in nodes)
        {
            text.Append("==== ").Append(node).Append(" exit ").AppendLine(node.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "-");
            text.AppendLine(node.Tail(lines));
        }

        return text.ToString();
    }
}
