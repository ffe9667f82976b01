using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Stcache.Faults.Tests.Harness;

/// <summary>
/// Every process the tests start is registered here and killed when the test process exits, whatever happens to
/// the test that started it (the tests also kill their own processes in DisposeAsync and finally blocks).
/// </summary>
public static partial class ProcessReaper
{
    private const int SignalKill = 9;
    private const int SignalContinue = 18;
    private const int SignalStop = 19;

    private static readonly Lock s_lock = new();
    private static readonly HashSet<Process> s_processes = [];

    static ProcessReaper()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        Console.CancelKeyPress += (_, _) => KillAll();
    }

    public static void Register(Process process)
    {
        lock (s_lock)
        {
            s_processes.Add(process);
        }
    }

    public static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                // SIGKILL also ends a stopped (SIGSTOP) process.
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
        }

        lock (s_lock)
        {
            s_processes.Remove(process);
        }
    }

    public static void KillAll()
    {
        List<Process> all;
        lock (s_lock)
        {
            all = [.. s_processes];
        }

        foreach (var process in all)
        {
            Kill(process);
        }
    }

    public static void Pause(Process process) => Signal(process, SignalStop);

    public static void Resume(Process process) => Signal(process, SignalContinue);

    public static void KillHard(Process process) => Signal(process, SignalKill);

    private static void Signal(Process process, int signal)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("signals are sent with Linux numbers");
        }

        if (SystemKill(process.Id, signal) != 0)
        {
            int error = Marshal.GetLastPInvokeError();
            if (!process.HasExited)
            {
                throw new InvalidOperationException($"kill({process.Id}, {signal}) failed with errno {error}");
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SystemKill(int pid, int signal);
}
