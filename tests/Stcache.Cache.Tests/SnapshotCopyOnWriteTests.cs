using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Tests;

public sealed class SnapshotCopyOnWriteTests
{
    [Fact]
    public async Task SnapshotWrittenWhileHashesExpiriesAndAccessChangeIsExactlyTheStateAtItsIndex()
    {
        var r = new CommandRunner();
        for (int i = 0; i < 5000; i++)
        {
            string key = "k" + (i % 2000).ToString(CultureInfo.InvariantCulture);
            r.Run(i % 3 == 0 ? ["HSET", "h" + key, "f" + (i % 7).ToString(CultureInfo.InvariantCulture), "v"] : ["SET", key, "v" + i.ToString(CultureInfo.InvariantCulture), "EX", "100"]);
        }

        var atIndex = r.Cache.Dump().Select(key => key.Describe(true)).ToArray();
        var snapshot = r.Cache.BeginSnapshot();
        var stream = new MemoryStream();
        var writer = Task.Run(() => snapshot.WriteTo(stream));
        var random = new Random(5);
        for (int i = 0; i < 20_000; i++)
        {
            r.NowUnixMs += 7;
            string key = "k" + random.Next(2000).ToString(CultureInfo.InvariantCulture);
            switch (random.Next(6))
            {
                case 0:
                    r.Run("HSET", "h" + key, "f" + random.Next(9).ToString(CultureInfo.InvariantCulture), "w");
                    break;
                case 1:
                    r.Run("HDEL", "h" + key, "f" + random.Next(9).ToString(CultureInfo.InvariantCulture));
                    break;
                case 2:
                    r.Run("EXPIRE", key, random.Next(-5, 500).ToString(CultureInfo.InvariantCulture));
                    break;
                case 3:
                    r.ApplyWrite(WriteCommand.Access([System.Text.Encoding.UTF8.GetBytes(key)]));
                    break;
                case 4:
                    r.Run("DEL", key);
                    break;
                default:
                    r.Run("APPEND", key, "x");
                    break;
            }
        }

        await writer;
        snapshot.Dispose();
        var restored = new CacheStateMachine();
        restored.Restore(new MemoryStream(stream.ToArray()));
        Assert.Equal(atIndex, restored.Dump().Select(key => key.Describe(true)));
        restored.AssertInvariants();
        r.Cache.AssertInvariants();
    }
}
