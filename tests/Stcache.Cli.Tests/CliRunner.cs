using System.Text;
using Stcache.Cli;

namespace Stcache.Cli.Tests;

/// <summary>One stcachectl invocation in-process, with its standard output and error captured.</summary>
internal sealed record CliResult(int ExitCode, string Out, string Error, byte[] RawOut)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout ---\n{Out}\n--- stderr ---\n{Error}";
}

internal static class CliRunner
{
    public static async Task<CliResult> RunAsync(params string[] args) => await RunWithStdinAsync(null, args);

    public static async Task<CliResult> RunWithStdinAsync(byte[]? stdin, params string[] args)
    {
        var raw = new MemoryStream();
        var output = new StringWriter();
        var error = new StringWriter();
        var io = new CliIo
        {
            Stdout = raw,
            Out = output,
            Error = error,
            OpenStdin = () => new MemoryStream(stdin ?? []),
            Interactive = false,
        };
        int code = await Stcache.Cli.Cli.RunAsync(args, io);
        byte[] rawBytes = raw.ToArray();
        return new CliResult(code, output.ToString() + Encoding.UTF8.GetString(rawBytes), error.ToString(), rawBytes);
    }
}
