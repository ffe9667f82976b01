using System.Globalization;

namespace Stcache.LoadGen;

/// <summary>Parses <c>--name=value</c> (or <c>--name value</c>) arguments into <see cref="LoadOptions"/>.</summary>
public static class CommandLine
{
    public const string Usage = """
        stcache-loadgen: closed-loop HTTP load generator for stcache.

          --targets=URL[,URL...]   node base URLs (default http://127.0.0.1:6000); workers spread round-robin
          --connections=N          concurrent closed-loop workers (default 16)
          --duration=T             measured time, e.g. 10s, 500ms, 1m (default 10s)
          --warmup=T               unmeasured warm-up (default 2s)
          --keys=N                 key space (default 10000)
          --value-size=BYTES       value size (default 100)
          --read-ratio=F           share of reads, 0..1 (default 0)
          --consistency=C          linearizable | lease | stale | none (default linearizable)
          --cas-ratio=F            share of writes done as compare-and-set, 0..1 (default 0)
          --timeout=T              per-operation timeout (default 5s)
          --api=v1|seed|etcd       /v1/kv/{key}, the seeds' /set and /get, or etcd's v3 JSON gateway (default v1)
          --preload                write every key once before the run
          --preload-only           write every key once, print how many were acknowledged, and exit
          --seed=N                 random seed (default 1)
          --key-prefix=P           keys are P0..P{keys-1} (default k)
          --json                   print the report as JSON instead of a table
        """;

    public static (LoadOptions Options, bool Json, bool Preload) Parse(IReadOnlyList<string> args)
    {
        var (options, json, preload, _) = ParseAll(args);
        return (options, json, preload);
    }

    public static (LoadOptions Options, bool Json, bool Preload, bool PreloadOnly) ParseAll(IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var options = new LoadOptions();
        bool json = false;
        bool preload = false;
        bool preloadOnly = false;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw new FormatException($"unexpected argument '{arg}'");
            }

            string name;
            string? value;
            int equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                name = arg[2..equals];
                value = arg[(equals + 1)..];
            }
            else
            {
                name = arg[2..];
                value = name is "json" or "preload" or "preload-only" ? null : i + 1 < args.Count ? args[++i] : throw new FormatException($"--{name} needs a value");
            }

            options = name switch
            {
                "targets" or "target" => options with { Targets = Required(name, value).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseUri).ToArray() },
                "connections" or "c" => options with { Connections = ParseInt(name, value) },
                "duration" or "d" => options with { Duration = ParseTime(name, value) },
                "warmup" => options with { Warmup = ParseTime(name, value) },
                "keys" => options with { KeyCount = ParseInt(name, value) },
                "value-size" => options with { ValueSizeBytes = ParseInt(name, value) },
                "read-ratio" => options with { ReadRatio = ParseDouble(name, value) },
                "consistency" => options with { Consistency = Required(name, value) is "none" ? string.Empty : value! },
                "cas-ratio" => options with { CasRatio = ParseDouble(name, value) },
                "timeout" => options with { RequestTimeout = ParseTime(name, value) },
                "api" => options with { Api = Required(name, value) switch { "v1" => ApiStyle.V1, "seed" => ApiStyle.Seed, "etcd" => ApiStyle.Etcd, _ => throw new FormatException("--api must be v1, seed or etcd") } },
                "seed" => options with { RandomSeed = ParseInt(name, value) },
                "key-prefix" => options with { KeyPrefix = Required(name, value) },
                "json" => SetFlag(ref json, options),
                "preload" => SetFlag(ref preload, options),
                "preload-only" => SetFlag(ref preloadOnly, options),
                _ => throw new FormatException($"unknown option --{name}"),
            };
        }

        options.Validate();
        return (options, json, preload, preloadOnly);
    }

    /// <summary>Parses 250ms, 10s, 2m, or a bare number of seconds.</summary>
    public static TimeSpan ParseTime(string name, string? value)
    {
        string text = Required(name, value);
        (string number, double scale) = text switch
        {
            _ when text.EndsWith("ms", StringComparison.Ordinal) => (text[..^2], 0.001),
            _ when text.EndsWith('s') => (text[..^1], 1.0),
            _ when text.EndsWith('m') => (text[..^1], 60.0),
            _ => (text, 1.0),
        };
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) && parsed >= 0
            ? TimeSpan.FromSeconds(parsed * scale)
            : throw new FormatException($"--{name}: '{text}' is not a duration");
    }

    private static LoadOptions SetFlag(ref bool flag, LoadOptions options)
    {
        flag = true;
        return options;
    }

    private static string Required(string name, string? value) =>
        string.IsNullOrEmpty(value) ? throw new FormatException($"--{name} needs a value") : value;

    private static int ParseInt(string name, string? value) =>
        int.TryParse(Required(name, value), NumberStyles.Integer, CultureInfo.InvariantCulture, out int parsed)
            ? parsed
            : throw new FormatException($"--{name}: '{value}' is not an integer");

    private static double ParseDouble(string name, string? value) =>
        double.TryParse(Required(name, value), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed)
            ? parsed
            : throw new FormatException($"--{name}: '{value}' is not a number");

    private static Uri ParseUri(string text) =>
        Uri.TryCreate(text.Contains("://", StringComparison.Ordinal) ? text : "http://" + text, UriKind.Absolute, out var uri)
            ? uri
            : throw new FormatException($"'{text}' is not a URL");
}
