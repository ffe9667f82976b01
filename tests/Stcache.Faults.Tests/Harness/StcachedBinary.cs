namespace Stcache.Faults.Tests.Harness;

/// <summary>
/// Finds the stcached build to run. The test project references the server project (without referencing its
/// assembly), so building the tests builds an up-to-date stcached next to the server project's output; the
/// configuration matches the tests'. <c>STCACHED_PATH</c> overrides (a published binary or dll).
/// </summary>
public static class StcachedBinary
{
    private static readonly Lazy<(string FileName, string[] PrefixArguments)> s_command = new(Locate);

    public static string FileName => s_command.Value.FileName;

    public static IReadOnlyList<string> PrefixArguments => s_command.Value.PrefixArguments;

    public static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Stcache.slnx")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Stcache.slnx not found above " + AppContext.BaseDirectory);
    }

    private static (string, string[]) Locate()
    {
        string? overridePath = Environment.GetEnvironmentVariable("STCACHED_PATH");
        if (!string.IsNullOrEmpty(overridePath))
        {
            return Command(overridePath);
        }

#if DEBUG
        const string configuration = "Debug";
#else
        const string configuration = "Release";
#endif
        string output = Path.Combine(RepositoryRoot(), "src", "Stcache.Server", "bin", configuration, "net10.0");
        return Command(Path.Combine(output, "stcached.dll"));
    }

    private static (string, string[]) Command(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException("stcached not built; build the solution (or set STCACHED_PATH)", path);
        }

        // The dll runs through the muxer, which works wherever the SDK does; an apphost runs directly.
        return path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
            ? ("dotnet", [path])
            : (path, []);
    }
}
