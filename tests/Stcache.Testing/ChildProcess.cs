using System.Diagnostics;

namespace Stcache.Testing;

/// <summary>A finished child process: its exit code and everything it wrote.</summary>
public sealed record ChildProcessResult(int Code, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {Code}\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Runs a program to completion within a bound, and kills its whole tree if the bound passes.</summary>
public static class ChildProcess
{
    public static async Task<ChildProcessResult> RunAsync(string program, IEnumerable<string> arguments, TimeSpan timeout, string? input = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException($"{program} did not start");
        if (input is not null)
        {
            await process.StandardInput.WriteAsync(input);
        }

        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);

            // What it printed before it was stopped says where it hung.
            string printed = await DrainAsync(stdout) + await DrainAsync(stderr);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {timeout.TotalSeconds:F0} s; it printed: {printed}");
        }

        return new ChildProcessResult(process.ExitCode, await stdout, await stderr);
    }

    private static async Task<string> DrainAsync(Task<string> output)
    {
        try
        {
            return await output.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
        {
            return $"[{e.GetType().Name}]";
        }
    }

    /// <summary>Runs one of the test's own .NET programs (e.g. <c>stcachectl.dll</c>), copied beside the test assembly.</summary>
    public static Task<ChildProcessResult> RunDotnetAsync(string assembly, TimeSpan timeout, params string[] arguments) =>
        RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, assembly), .. arguments], timeout);
}
