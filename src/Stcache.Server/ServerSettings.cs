using System.ComponentModel.DataAnnotations;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Stcache.Storage;

namespace Stcache.Server;

/// <summary>
/// Every setting with a range or a form to check, bound from <see cref="IConfiguration"/> under the flags' own names
/// (<see cref="ConfigurationKeyNameAttribute"/>) and checked at start by a validator generated at compile time
/// (<see cref="ServerSettingsValidator"/>, run through <c>ValidateOnStart</c>). Values stay the text the user gave,
/// so a message quotes it as written.
/// <para>A new flag with a range goes here, like <see cref="MaxConnections"/>: a property named by its flag, with a
/// <see cref="FlagRangeAttribute"/> (or <see cref="HostPortAttribute"/>, <see cref="OneOfAttribute"/>,
/// <see cref="ReadableFileAttribute"/>). Checks across flags (contradictions) stay in <see cref="CommandLine"/>.</para>
/// </summary>
public sealed class ServerSettings
{
    // ---- Cluster
    [ConfigurationKeyName("http")]
    [HostPort("http")]
    public string? Http { get; set; }

    [ConfigurationKeyName("raft")]
    [HostPort("raft")]
    public string? Raft { get; set; }

    [ConfigurationKeyName("join")]
    [HostPort("join")]
    public string? Join { get; set; }

    [ConfigurationKeyName("resp")]
    [HostPort("resp")]
    public string? Resp { get; set; }

    // ---- Raft timing
    [ConfigurationKeyName("tick-ms")]
    [FlagRange("tick-ms", 1, 60_000)]
    public string? TickMs { get; set; }

    [ConfigurationKeyName("election-ticks")]
    [FlagRange("election-ticks", 2, 10_000)]
    public string? ElectionTicks { get; set; }

    [ConfigurationKeyName("heartbeat-ticks")]
    [FlagRange("heartbeat-ticks", 1, 10_000)]
    public string? HeartbeatTicks { get; set; }

    [ConfigurationKeyName("leader-lost-ticks")]
    [FlagRange("leader-lost-ticks", 0, 10_000)]
    public string? LeaderLostTicks { get; set; }

    [ConfigurationKeyName("request-timeout-ms")]
    [FlagRange("request-timeout-ms", 1, 3_600_000)]
    public string? RequestTimeoutMs { get; set; }

    // ---- Storage and snapshots
    [ConfigurationKeyName("snapshot-interval-s")]
    [FlagRange("snapshot-interval-s", 0, 86_400)]
    public string? SnapshotIntervalSeconds { get; set; }

    [ConfigurationKeyName("snapshot-threshold")]
    [FlagRange("snapshot-threshold", 1, int.MaxValue)]
    public string? SnapshotThreshold { get; set; }

    [ConfigurationKeyName("snapshot-log-bytes")]
    [FlagRange("snapshot-log-bytes", 0, int.MaxValue)]
    public string? SnapshotLogBytes { get; set; }

    [ConfigurationKeyName("snapshot-trailing")]
    [FlagRange("snapshot-trailing", 0, int.MaxValue)]
    public string? SnapshotTrailing { get; set; }

    [ConfigurationKeyName("wal-segment-size")]
    [ByteSizeRange("wal-segment-size", WalOptions.SegmentSizeBytesMin, WalOptions.SegmentSizeBytesMax)]
    public string? WalSegmentSize { get; set; }

    // ---- Limits (memory limits and the eviction policy belong here too)
    [ConfigurationKeyName("max-value-bytes")]
    [FlagRange("max-value-bytes", 1, 64 << 20)]
    public string? MaxValueBytes { get; set; }

    [ConfigurationKeyName("max-connections")]
    [FlagRange("max-connections", 1, 1_000_000)]
    public string? MaxConnections { get; set; }

    [ConfigurationKeyName("max-clients")]
    [FlagRange("max-clients", 1, 1_000_000)]
    public string? MaxClients { get; set; }

    [ConfigurationKeyName("resp-idle-timeout-s")]
    [FlagRange("resp-idle-timeout-s", 0, 31_536_000)]
    public string? RespIdleTimeoutSeconds { get; set; }

    // ---- Security: files that must be readable
    [ConfigurationKeyName("tls-cert")]
    [ReadableFile("tls-cert")]
    public string? TlsCert { get; set; }

    [ConfigurationKeyName("tls-key")]
    [ReadableFile("tls-key")]
    public string? TlsKey { get; set; }

    [ConfigurationKeyName("tls-ca")]
    [ReadableFile("tls-ca")]
    public string? TlsCa { get; set; }

    [ConfigurationKeyName("peer-tls-cert")]
    [ReadableFile("peer-tls-cert")]
    public string? PeerTlsCert { get; set; }

    [ConfigurationKeyName("peer-tls-key")]
    [ReadableFile("peer-tls-key")]
    public string? PeerTlsKey { get; set; }

    [ConfigurationKeyName("peer-tls-ca")]
    [ReadableFile("peer-tls-ca")]
    public string? PeerTlsCa { get; set; }

    [ConfigurationKeyName("cluster-secret-file")]
    [ReadableFile("cluster-secret-file")]
    public string? ClusterSecretFile { get; set; }

    [ConfigurationKeyName("auth-token-file")]
    [ReadableFile("auth-token-file")]
    public string? AuthTokenFile { get; set; }

    // ---- Configuration
    [ConfigurationKeyName("warmup")]
    [OneOf("warmup", "on", "off")]
    public string? Warmup { get; set; }

    [ConfigurationKeyName("log-level")]
    [OneOf("log-level", "Trace", "Debug", "Information", "Warning", "Error", "Critical", "None")]
    public string? LogLevel { get; set; }

    [ConfigurationKeyName("io-threads")]
    [OneOf("io-threads", "inline", "pool")]
    public string? IoThreads { get; set; }

    [ConfigurationKeyName("http-scheduling")]
    [OneOf("http-scheduling", "inline", "pool")]
    public string? HttpScheduling { get; set; }

    /// <summary>How each setting was given, by canonical flag: <c>--http_addr</c>, <c>STCACHE_TICK_MS: --tick-ms</c>,
    /// <c>--config FILE: "tick-ms": --tick-ms</c>. Not bound; the messages start with it.</summary>
    internal Dictionary<string, string> Sources { get; } = new(StringComparer.Ordinal);

    internal string Where(string flag) => Sources.TryGetValue(flag, out string? where) ? where : "--" + flag;

    /// <summary>
    /// Binds the settings from <paramref name="values"/> (canonical flag → value as given) and runs the compile-time
    /// validator through the options pipeline's start-up validation, as a host does at start. Throws a
    /// <see cref="UsageException"/> with one line per bad setting.
    /// </summary>
    public static void Validate(IReadOnlyDictionary<string, string> values, IReadOnlyDictionary<string, string> sources)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(pair => new KeyValuePair<string, string?>(pair.Key, pair.Value)))
            .Build();
        var services = new ServiceCollection();
        services.AddOptions<ServerSettings>()
            .Bind(configuration)
            .PostConfigure(settings =>
            {
                foreach (var (flag, where) in sources)
                {
                    settings.Sources[flag] = where;
                }
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<ServerSettings>, ServerSettingsValidator>();
        using var provider = services.BuildServiceProvider();
        try
        {
            provider.GetRequiredService<IStartupValidator>().Validate();
        }
        catch (OptionsValidationException e)
        {
            throw new UsageException(string.Join('\n', e.Failures));
        }
    }
}

/// <summary>The validator of <see cref="ServerSettings"/>, generated at compile time (no reflection at run time).</summary>
[OptionsValidator]
public sealed partial class ServerSettingsValidator : IValidateOptions<ServerSettings>
{
}

/// <summary>A check of one flag's value. The message is complete (it names the flag as the user gave it), so it
/// carries no member names: the options pipeline then reports it as it is.</summary>
[AttributeUsage(AttributeTargets.Property)]
public abstract class FlagCheckAttribute(string flag) : ValidationAttribute
{
    public string Flag { get; } = flag;

    protected override ValidationResult? IsValid(object? value, ValidationContext validationContext)
    {
        ArgumentNullException.ThrowIfNull(validationContext);
        if (value is not string text || Problem(text) is not { } problem)
        {
            return ValidationResult.Success;
        }

        string where = validationContext.ObjectInstance is ServerSettings settings ? settings.Where(Flag) : "--" + Flag;
        return new ValidationResult($"{where}: {problem}");
    }

    /// <summary>What is wrong with the value, or null.</summary>
    protected abstract string? Problem(string value);
}

/// <summary>An integer in [min, max].</summary>
public sealed class FlagRangeAttribute(string flag, int minimum, int maximum) : FlagCheckAttribute(flag)
{
    public int Minimum { get; } = minimum;

    public int Maximum { get; } = maximum;

    protected override string? Problem(string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int number) && number >= Minimum && number <= Maximum
            ? null
            : $"'{value}' must be an integer in [{Minimum}, {Maximum}]";
}

/// <summary>A byte count in [min, max], in bytes or with Redis's units (<see cref="CommandLine.ParseBytes"/>, which
/// reports text that is no size when the flag is parsed).</summary>
public sealed class ByteSizeRangeAttribute(string flag, long minimum, long maximum) : FlagCheckAttribute(flag)
{
    public long Minimum { get; } = minimum;

    public long Maximum { get; } = maximum;

    protected override string? Problem(string value) =>
        CommandLine.TryParseBytes(value, out long bytes) && bytes >= Minimum && bytes <= Maximum
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"'{value}' must be a size from {Minimum} to {Maximum} bytes (units as in Redis: 16mb, 1gb)");
}

/// <summary>host:port (an empty host means every interface).</summary>
public sealed class HostPortAttribute(string flag) : FlagCheckAttribute(flag)
{
    protected override string? Problem(string value)
    {
        int colon = value.LastIndexOf(':');
        bool good = colon >= 0
            && int.TryParse(value.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) && port <= 65535
            && !value[..colon].Contains('/', StringComparison.Ordinal) && !value[..colon].Contains(' ', StringComparison.Ordinal);
        return good ? null : $"'{value}' is not host:port";
    }
}

/// <summary>One of a fixed set of names (case-insensitive), like an enum's.</summary>
public sealed class OneOfAttribute(string flag, params string[] names) : FlagCheckAttribute(flag)
{
    public IReadOnlyList<string> Names { get; } = names;

    protected override string? Problem(string value) =>
        Names.Contains(value, StringComparer.OrdinalIgnoreCase) ? null : $"unknown value '{value}' (one of {string.Join(", ", Names)})";
}

/// <summary>A file that exists and can be read now, so a typo is caught before anything starts.</summary>
public sealed class ReadableFileAttribute(string flag) : FlagCheckAttribute(flag)
{
    protected override string? Problem(string value)
    {
        try
        {
            using var stream = File.OpenRead(value);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return $"cannot read '{value}': {e.Message}";
        }
    }
}
