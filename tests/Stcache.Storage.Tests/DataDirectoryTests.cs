namespace Stcache.Storage.Tests;

public sealed class DataDirectoryTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void CreatesTheLayoutInAMissingDirectory()
    {
        string path = _temp.Combine("node0");
        using (DataDirectory directory = DataDirectory.Open(path))
        {
            Assert.True(File.Exists(Path.Combine(path, DataDirectory.MarkerFileName)));
            Assert.True(Directory.Exists(directory.WalPath));
            Assert.True(Directory.Exists(directory.SnapshotPath));
            using WriteAheadLog wal = directory.OpenLog();
            Assert.Empty(wal.Load().Entries);
            Assert.Null(directory.OpenSnapshots().LoadNewest());
        }

        Assert.True(DataDirectory.IsDataDirectory(path, out _));
    }

    [Fact]
    public void SecondOpenFailsWhileTheFirstHoldsTheLock()
    {
        string path = _temp.Combine("node0");
        using (DataDirectory.Open(path))
        {
            var error = Assert.Throws<DataDirectoryException>(() => DataDirectory.Open(path));
            Assert.Contains("in use", error.Message, StringComparison.Ordinal);
        }

        // Released on dispose.
        using DataDirectory again = DataDirectory.Open(path);
    }

    [Fact]
    public void SecondProcessCannotOpenALockedDirectory()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        string path = _temp.Combine("node0");
        using DataDirectory held = DataDirectory.Open(path);

        // flock from another process: the same lock another stcached would try to take.
        var start = new System.Diagnostics.ProcessStartInfo("flock", ["--nonblock", Path.Combine(path, DataDirectory.LockFileName), "true"])
        {
            RedirectStandardError = true,
        };
        System.Diagnostics.Process? process;
        try
        {
            process = System.Diagnostics.Process.Start(start);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return; // no flock(1) on this machine
        }

        process!.WaitForExit();
        Assert.NotEqual(0, process.ExitCode);
    }

    [Fact]
    public void RefusesANonEmptyForeignDirectory()
    {
        string path = _temp.Combine("home");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "thesis.tex"), "precious");
        var error = Assert.Throws<DataDirectoryException>(() => DataDirectory.Open(path));
        Assert.Contains("not a stcache data directory", error.Message, StringComparison.Ordinal);
        Assert.Equal(["thesis.tex"], Directory.GetFileSystemEntries(path).Select(Path.GetFileName));
    }

    [Fact]
    public void RefusesAnUnknownLayoutVersion()
    {
        string path = _temp.Combine("node0");
        using (DataDirectory.Open(path))
        {
        }

        File.WriteAllText(Path.Combine(path, DataDirectory.MarkerFileName), "stcache data directory\nlayout 99\n");
        var error = Assert.Throws<DataDirectoryException>(() => DataDirectory.Open(path));
        Assert.Contains("99", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AcceptsAnEmptyExistingDirectory()
    {
        string path = _temp.Combine("empty");
        Directory.CreateDirectory(path);
        using DataDirectory directory = DataDirectory.Open(path);
        Assert.True(DataDirectory.IsDataDirectory(path, out _));
    }
}
