namespace Stcache.Cli;

/// <summary>stcachectl: a command-line client for stcached's API, plus offline data tools.</summary>
public static class Program
{
    public static Task<int> Main(string[] args) => Cli.RunAsync(args, CliIo.FromConsole());
}
