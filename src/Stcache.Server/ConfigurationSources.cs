using System.Collections;
using System.Globalization;
using System.Text.Json;

namespace Stcache.Server;

/// <summary>
/// Settings from three places, with the usual .NET precedence: command-line flags over <c>STCACHE_*</c>
/// environment variables over a JSON file named by <c>--config</c>. Every setting is a flag of
/// <see cref="CommandLine"/> under the same name (<c>"tick-ms": 50</c>, <c>STCACHE_TICK_MS=50</c>), so one parser
/// and one validation serve all three; a bad value is reported in one line that names where it came from.
/// </summary>
public static class ConfigurationSources
{
    public const string EnvironmentPrefix = "STCACHE_";

    /// <summary>Read by their flags' own fallbacks (after the file flag), so not mapped here.</summary>
    private static readonly HashSet<string> s_ownEnvironment = new(StringComparer.Ordinal) { "auth-token", "cluster-secret", "help" };

    public static ServerOptions Parse(IReadOnlyList<string> args, IDictionary environment)
    {
        var commandLine = new List<string>();
        string? configFile = null;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            string body = arg.TrimStart('-');
            if (arg.StartsWith('-') && (body == "config" || body.StartsWith("config=", StringComparison.Ordinal)))
            {
                if (configFile is not null)
                {
                    throw new UsageException("flag '--config' given twice");
                }

                configFile = body.Length > "config".Length ? body["config=".Length..]
                    : i + 1 < args.Count ? args[++i] : throw new UsageException("flag '--config' needs a value");
                continue;
            }

            commandLine.Add(arg);
        }

        var given = GivenFlags(commandLine);
        var fromEnvironment = FromEnvironment(environment).Where(s => !given.Contains(s.Flag)).ToList();
        var fromFile = configFile is null ? [] : FromFile(configFile).Where(s => !given.Contains(s.Flag) && !fromEnvironment.Any(e => e.Flag == s.Flag)).ToList();
        var merged = fromFile.Concat(fromEnvironment).SelectMany(s => s.Args).Concat(commandLine).ToList();
        var sources = fromFile.Concat(fromEnvironment).ToDictionary(s => s.Flag, s => s.Source, StringComparer.Ordinal);
        return CommandLine.Parse(merged, sources);
    }

    /// <summary>Canonical names of the flags on the command line (values skipped).</summary>
    private static HashSet<string> GivenFlags(List<string> args)
    {
        var given = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg.Length < 2 || arg[0] != '-')
            {
                continue;
            }

            string body = arg.TrimStart('-');
            int equals = body.IndexOf('=', StringComparison.Ordinal);
            string name = equals >= 0 ? body[..equals] : body;
            if (CommandLine.CanonicalName(name) is { } canonical)
            {
                given.Add(canonical);
                if (equals < 0 && !CommandLine.IsBoolFlag(name))
                {
                    i++;
                }
            }
        }

        return given;
    }

    /// <summary>One setting from the environment or the file: its canonical flag, the flag it becomes, and where it
    /// came from as the user wrote it (<c>STCACHE_TICK_MS</c>, <c>--config FILE: "tick-ms"</c>).</summary>
    private sealed record Setting(string Flag, string[] Args, string Source);

    private static List<Setting> FromEnvironment(IDictionary environment)
    {
        var settings = new List<Setting>();
        foreach (var names in CommandLine.FlagNames)
        {
            if (s_ownEnvironment.Contains(names[0]))
            {
                continue;
            }

            foreach (string name in names.Where(n => n.Length > 1))
            {
                string variable = VariableName(name);
                if (environment[variable] is string { Length: > 0 } value)
                {
                    if (settings.Any(s => s.Flag == names[0]))
                    {
                        throw new UsageException($"{variable}: --{names[0]} is set by two environment variables");
                    }

                    settings.Add(Checked(new Setting(names[0], [$"--{name}={value}"], variable)));
                }
            }
        }

        return settings;
    }

    private static List<Setting> FromFile(string path)
    {
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            root = document.RootElement.Clone();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--config: cannot read '{path}': {e.Message}");
        }
        catch (JsonException e)
        {
            throw new UsageException($"--config {path}: not valid JSON: {e.Message}");
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new UsageException($"--config {path}: expected a JSON object of settings, like {{\"http\": \"127.0.0.1:6000\"}}");
        }

        var settings = new List<Setting>();
        foreach (var property in root.EnumerateObject())
        {
            string where = $"--config {path}: \"{property.Name}\"";
            string canonical = CommandLine.CanonicalName(property.Name) is { } known && known != "help"
                ? known
                : throw new UsageException($"{where} is not a setting (settings are named as the flags; see stcached --help)");
            if (settings.Any(s => s.Flag == canonical))
            {
                throw new UsageException($"{where}: --{canonical} is set twice in the file");
            }

            string value = property.Value.ValueKind switch
            {
                JsonValueKind.String => property.Value.GetString()!,
                JsonValueKind.Number => property.Value.GetRawText(),
                JsonValueKind.True => "true",
                JsonValueKind.False => "false",
                _ => throw new UsageException($"{where} must be a string, number or boolean"),
            };
            settings.Add(Checked(new Setting(canonical, [$"--{property.Name}={value}"], where)));
        }

        return settings;
    }

    /// <summary>Parses the one flag alone so that a bad form (a boolean, an id list) is reported with its source;
    /// ranges and addresses are checked later by <see cref="ServerSettings"/>, which names the source too.</summary>
    private static Setting Checked(Setting setting)
    {
        try
        {
            CommandLine.ParseFlags(setting.Args);
        }
        catch (UsageException e)
        {
            throw new UsageException($"{setting.Source}: {e.Message}");
        }

        return setting;
    }

    public static string VariableName(string flag) =>
        EnvironmentPrefix + flag.Replace('-', '_').ToUpper(CultureInfo.InvariantCulture);
}
