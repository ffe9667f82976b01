using Stcache.LoadGen;

namespace Stcache.LoadGen.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public void Parses_every_option()
    {
        var (options, json, preload) = CommandLine.Parse(
        [
            "--targets=127.0.0.1:6000,http://127.0.0.1:6001", "--connections", "64", "--duration=1.5s", "--warmup=250ms",
            "--keys=100", "--value-size=1024", "--read-ratio=0.9", "--consistency=stale", "--cas-ratio=0.1",
            "--timeout=2s", "--api=v1", "--seed=3", "--json", "--preload",
        ]);
        Assert.Equal(2, options.Targets.Count);
        Assert.Equal(new Uri("http://127.0.0.1:6000"), options.Targets[0]);
        Assert.Equal(64, options.Connections);
        Assert.Equal(TimeSpan.FromSeconds(1.5), options.Duration);
        Assert.Equal(TimeSpan.FromMilliseconds(250), options.Warmup);
        Assert.Equal(100, options.KeyCount);
        Assert.Equal(1024, options.ValueSizeBytes);
        Assert.Equal(0.9, options.ReadRatio);
        Assert.Equal("stale", options.Consistency);
        Assert.Equal(0.1, options.CasRatio);
        Assert.Equal(TimeSpan.FromSeconds(2), options.RequestTimeout);
        Assert.Equal(3, options.RandomSeed);
        Assert.True(json);
        Assert.True(preload);
    }

    [Theory]
    [InlineData("--connections=0")]
    [InlineData("--read-ratio=1.5")]
    [InlineData("--consistency=eventual")]
    [InlineData("--duration=abc")]
    [InlineData("--bogus=1")]
    [InlineData("positional")]
    public void Rejects_bad_input(string arg)
    {
        Assert.ThrowsAny<Exception>(() => CommandLine.Parse([arg]));
    }
}
