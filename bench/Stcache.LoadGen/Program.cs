using Stcache.LoadGen;

if (args.Length > 0 && args[0] is "-h" or "--help")
{
    Console.WriteLine(CommandLine.Usage);
    return 0;
}

LoadOptions options;
bool json;
bool preload;
bool preloadOnly;
try
{
    (options, json, preload, preloadOnly) = CommandLine.ParseAll(args);
}
catch (Exception exception) when (exception is FormatException or ArgumentException)
{
    Console.Error.WriteLine(exception.Message);
    Console.Error.WriteLine(CommandLine.Usage);
    return 2;
}

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

using var generator = new LoadGenerator(options);
if (preload || preloadOnly)
{
    var clock = System.Diagnostics.Stopwatch.StartNew();
    long loaded = await generator.PreloadAsync(cancel.Token);
    Console.Error.WriteLine($"preloaded {loaded} of {options.KeyCount} keys in {clock.Elapsed.TotalSeconds:0.0} s");
    if (preloadOnly)
    {
        Console.WriteLine(loaded);
        return loaded == options.KeyCount ? 0 : 1;
    }
}

var report = await generator.RunAsync(cancel.Token);
Console.WriteLine(json ? report.ToJson() : report.ToTable());
return report.Succeeded > 0 ? 0 : 1;
