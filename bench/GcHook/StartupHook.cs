using System.Globalization;

/// <summary>
/// Every collection of a process, one line each, for finding what stalls a node ("Write tail latency, session 13" in
/// docs/PERFORMANCE.md). Loaded by the runtime before Main when DOTNET_STARTUP_HOOKS names this assembly; with
/// GCHOOK_OUT=PREFIX set it writes PREFIX.PID: first the GC settings in force (GC.GetConfigurationVariables, which is
/// how a runtimeconfig.json setting can be seen to take effect), then, read every 5 ms from
/// GC.GetGCMemoryInfo(GCKind.Any), each collection's wall time, generation, whether it compacted or ran in the
/// background, its pauses and the bytes it promoted. A collection that started and ended within one 5 ms poll behind
/// another is reported as missed.
/// </summary>
internal static class StartupHook
{
    public static void Initialize()
    {
        string? prefix = Environment.GetEnvironmentVariable("GCHOOK_OUT");
        if (string.IsNullOrEmpty(prefix))
        {
            return;
        }

        var thread = new Thread(() => Record(prefix + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture)))
        {
            IsBackground = true,
            Name = "gc-hook",
        };
        thread.Start();
    }

    private static void Record(string path)
    {
        using var writer = new StreamWriter(path) { AutoFlush = true };
        foreach (var (name, value) in GC.GetConfigurationVariables())
        {
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# {name}={value}"));
        }

        // A background gen2 can end after a younger collection that ran inside it: its index then comes after a higher
        // one. Report each index once: on a change of the index read, and count as missed only what lies past the
        // highest index seen.
        long lastRead = 0;
        long highest = 0;
        while (true)
        {
            var info = GC.GetGCMemoryInfo(GCKind.Any);
            if (info.Index != lastRead && info.Index != 0)
            {
                lastRead = info.Index;
                if (highest != 0 && info.Index > highest + 1)
                {
                    writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# missed {info.Index - highest - 1}"));
                }

                highest = Math.Max(highest, info.Index);
                var pauses = info.PauseDurations;
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTime.UtcNow:HH:mm:ss.fff} idx {info.Index} gen {info.Generation} compacted {info.Compacted} concurrent {info.Concurrent} " +
                    $"pause {pauses[0].TotalMilliseconds:F1}+{pauses[1].TotalMilliseconds:F1} ms heap {info.HeapSizeBytes >> 20} MiB " +
                    $"frag {info.FragmentedBytes >> 20} MiB promoted {info.PromotedBytes >> 20} MiB"));
            }

            Thread.Sleep(5);
        }
    }
}
