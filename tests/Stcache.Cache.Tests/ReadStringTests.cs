using System.Text;

namespace Stcache.Cache.Tests;

/// <summary>GET by key bytes (<see cref="CacheStateMachine.ReadString"/>, the RESP READONLY fast path) answers what
/// the general read of a GET answers, for every kind of key.</summary>
public sealed class ReadStringTests
{
    private struct Capture : IValueSink
    {
        public byte[]? Value;

        void IValueSink.Value(ReadOnlySpan<byte> value) => Value = value.ToArray();
    }

    private static (StringRead Status, byte[]? Value) ReadString(CommandRunner runner, string key, long time)
    {
        var capture = new Capture();
        var status = runner.Cache.ReadString(Encoding.UTF8.GetBytes(key), time, ref capture);
        return (status, capture.Value);
    }

    [Fact]
    public void AnswersAsTheGeneralGet()
    {
        var runner = new CommandRunner();
        runner.Run("SET", "plain", "value");
        runner.Run("SET", "empty", "");
        runner.Run("SET", "soon", "gone", "PX", "100");
        runner.Run("HSET", "hash", "f", "v");
        runner.Run("SET", "", "empty key");
        runner.Run("SET", "binary\u00e9", "\u00e9\u0000x");
        foreach (long later in new long[] { 0, 99, 100, 5000 })
        {
            long time = runner.NowUnixMs + later;
            foreach (string key in new[] { "plain", "empty", "soon", "hash", "", "binary\u00e9", "missing" })
            {
                var general = runner.Cache.Read(CommandParser.Parse(time, "GET", key).Read!, time);
                var (status, value) = ReadString(runner, key, time);
                switch (general.Kind)
                {
                    case ReplyKind.Bulk:
                        Assert.Equal(StringRead.Found, status);
                        Assert.Equal(general.Bulk, value);
                        break;
                    case ReplyKind.Null:
                        Assert.Equal(StringRead.Missing, status);
                        Assert.Null(value);
                        break;
                    default:
                        Assert.Equal(RedisErrors.WrongType, general.Text);
                        Assert.Equal(StringRead.WrongType, status);
                        Assert.Null(value);
                        break;
                }
            }
        }

        Assert.Equal(StringRead.Found, ReadString(runner, "soon", runner.NowUnixMs + 99).Status);
        Assert.Equal(StringRead.Missing, ReadString(runner, "soon", runner.NowUnixMs + 100).Status);
        Assert.Equal(StringRead.WrongType, ReadString(runner, "hash", runner.NowUnixMs).Status);
    }

    [Fact]
    public void AnExpiredKeyIsNotedForLazyExpiryAsByTheGeneralRead()
    {
        var general = new CommandRunner();
        var fast = new CommandRunner();
        foreach (var runner in new[] { general, fast })
        {
            runner.Run("SET", "k", "v", "PX", "10");
        }

        long time = general.NowUnixMs + 10;
        general.Cache.Read(CommandParser.Parse(time, "GET", "k").Read!, time);
        Assert.Equal(StringRead.Missing, ReadString(fast, "k", time).Status);
        Assert.Equal(["k"], general.Cache.DrainLazyExpired().Select(Encoding.UTF8.GetString));
        Assert.Equal(["k"], fast.Cache.DrainLazyExpired().Select(Encoding.UTF8.GetString));
    }
}
