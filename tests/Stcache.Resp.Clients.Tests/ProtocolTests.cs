using System.Text;
using Stcache.Integration.Tests;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>Two single-node clusters: one open (small limits: 1 KiB values, 6 clients, 3 s idle), one with a token.</summary>
public sealed class ProtocolFixture : RespClusterTest, IAsyncLifetime
{
    public const string Token = "resp-test-token-0123456789";

    public Node Open { get; private set; } = null!;

    public Node Secured { get; private set; } = null!;

    public int OpenPort => RespPorts[Open];

    public int SecuredPort => RespPorts[Secured];

    public new async Task InitializeAsync()
    {
        Open = StartSingle("open", "--max-value-bytes=1024", "--max-clients=6", "--resp-idle-timeout-s=3");
        Secured = StartSingle("secured", "--auth-token=" + Token);
        await WaitForClusterAsync([Open]);

        // The token also guards /v1/status, so wait on RESP: authenticated, the node reports itself master.
        await Api.WaitUntilAsync("the secured node leads", async () =>
        {
            await using var client = await RawClient.ConnectAsync(SecuredPort);
            return await client.CommandAsync("AUTH", Token) == "+OK" && (await client.CommandAsync("ROLE")).StartsWith("*3\r\n$6\r\nmaster", StringComparison.Ordinal);
        }, Wait, Secured);
    }
}

public sealed class ProtocolTests(ProtocolFixture fixture) : IClassFixture<ProtocolFixture>
{
    private Task<RawClient> ConnectAsync() => RawClient.ConnectAsync(fixture.OpenPort);

    [Fact]
    public async Task PipelinedCommandsAreAnsweredInOrder()
    {
        await using var client = await ConnectAsync();
        var pipeline = new List<byte>();
        for (int i = 0; i < 200; i++)
        {
            pipeline.AddRange(RawClient.Encode("SET", "pipe", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            pipeline.AddRange(RawClient.Encode("GET", "pipe"));
            pipeline.AddRange(RawClient.Encode("INCR", "pipe"));
        }

        await client.SendAsync([.. pipeline]);
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal("+OK", await client.ReadReplyAsync());
            string n = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal($"${n.Length}\r\n{n}\r\n", await client.ReadReplyAsync());
            Assert.Equal($":{i + 1}", await client.ReadReplyAsync());
        }
    }

    [Fact]
    public async Task InlineCommandsWork()
    {
        await using var client = await ConnectAsync();
        await client.SendAsync(Encoding.ASCII.GetBytes("SET inline \"a b\"\r\nGET inline\r\nPING\r\n"));
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal("$3\r\na b\r\n", await client.ReadReplyAsync());
        Assert.Equal("+PONG", await client.ReadReplyAsync());
    }

    [Fact]
    public async Task MalformedInputIsAnsweredAndClosedWithoutHurtingOthers()
    {
        await using var bystander = await ConnectAsync();
        Assert.Equal("+PONG", await bystander.CommandAsync("PING"));

        await using var bad = await ConnectAsync();
        await bad.SendAsync(Encoding.ASCII.GetBytes("*1\r\n$3\r\nGET\r\n*2\r\n$x\r\n"));
        Assert.Equal("-ERR wrong number of arguments for 'get' command", await bad.ReadReplyAsync());
        Assert.Equal("-ERR Protocol error: invalid bulk length", await bad.ReadReplyAsync());
        Assert.True(await bad.IsClosedAsync(TimeSpan.FromSeconds(10)));

        await using var huge = await ConnectAsync();
        await huge.SendAsync(Encoding.ASCII.GetBytes("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n"));
        Assert.Equal("-ERR Protocol error: invalid bulk length", await huge.ReadReplyAsync());
        Assert.True(await huge.IsClosedAsync(TimeSpan.FromSeconds(10)));

        await using var quotes = await ConnectAsync();
        await quotes.SendAsync(Encoding.ASCII.GetBytes("SET \"unbalanced\r\n"));
        Assert.Equal("-ERR Protocol error: unbalanced quotes in request", await quotes.ReadReplyAsync());

        Assert.Equal("+PONG", await bystander.CommandAsync("PING"));
    }

    [Fact]
    public async Task ErrorsUseRedisTexts()
    {
        await using var client = await ConnectAsync();
        Assert.Equal("-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' ", await client.CommandAsync("NOPE", "a", "b"));
        Assert.Equal("-ERR DB index is out of range", await client.CommandAsync("SELECT", "1"));
        Assert.Equal("+OK", await client.CommandAsync("SELECT", "0"));
        Assert.Equal("-ERR syntax error", await client.CommandAsync("SET", "k", "v", "BOGUS"));
        Assert.Equal("-ERR invalid expire time in 'set' command", await client.CommandAsync("SET", "k", "v", "EX", "0"));
        Assert.Equal("+OK", await client.CommandAsync("SET", "text", "abc"));
        Assert.Equal("-ERR value is not an integer or out of range", await client.CommandAsync("INCR", "text"));
        Assert.Equal("-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.", await client.CommandAsync("CLIENT", "NOPE"));
        Assert.Equal("-NOPROTO unsupported protocol version", await client.CommandAsync("HELLO", "4"));
        Assert.Equal("-ERR EXEC without MULTI", await client.CommandAsync("EXEC"));
    }

    [Fact]
    public async Task EchoReturnsTheExactBytes()
    {
        await using var client = await ConnectAsync();
        var bytes = new List<byte>(Encoding.ASCII.GetBytes("*2\r\n$4\r\nECHO\r\n$4\r\n"));
        bytes.AddRange([0x00, 0xff, 0x0d, 0x0a]);
        bytes.AddRange("\r\n"u8.ToArray());
        await client.SendAsync([.. bytes]);
        string reply = await client.ReadReplyAsync();
        Assert.Equal("$4\r\n\0\uFFFD\r\n\r\n", reply);
    }

    [Fact]
    public async Task Resp3HelloMapAndNulls()
    {
        await using var client = await ConnectAsync();
        string hello = await client.CommandAsync("HELLO", "3", "SETNAME", "tester");
        Assert.StartsWith("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n", hello, StringComparison.Ordinal);
        Assert.Contains("$5\r\nproto\r\n:3\r\n", hello, StringComparison.Ordinal);
        Assert.Contains("$4\r\nrole\r\n$6\r\nmaster\r\n", hello, StringComparison.Ordinal);
        Assert.Equal("_", await client.CommandAsync("GET", "never-set"));
        Assert.Equal("$6\r\ntester\r\n", await client.CommandAsync("CLIENT", "GETNAME"));
        Assert.Equal("+RESET", await client.CommandAsync("RESET"));
        Assert.Equal("$-1", await client.CommandAsync("GET", "never-set"));
    }

    [Fact]
    public async Task MultiExecAndWatch()
    {
        await using var client = await ConnectAsync();
        Assert.Equal("+OK", await client.CommandAsync("MULTI"));
        Assert.Equal("+QUEUED", await client.CommandAsync("SET", "tx", "1"));
        Assert.Equal("+QUEUED", await client.CommandAsync("INCR", "tx"));
        Assert.Equal("+QUEUED", await client.CommandAsync("GET", "tx"));
        Assert.Equal("*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n", await client.CommandAsync("EXEC"));

        Assert.Equal("+OK", await client.CommandAsync("MULTI"));
        Assert.Equal("-ERR wrong number of arguments for 'get' command", await client.CommandAsync("GET"));
        Assert.Equal("-EXECABORT Transaction discarded because of previous errors.", await client.CommandAsync("EXEC"));

        await using var other = await ConnectAsync();
        Assert.Equal("+OK", await client.CommandAsync("WATCH", "tx"));
        Assert.Equal("+OK", await other.CommandAsync("SET", "tx", "changed"));
        Assert.Equal("+OK", await client.CommandAsync("MULTI"));
        Assert.Equal("+QUEUED", await client.CommandAsync("SET", "tx", "mine"));
        Assert.Equal("*-1", await client.CommandAsync("EXEC"));
        Assert.Equal("$7\r\nchanged\r\n", await client.CommandAsync("GET", "tx"));
    }

    [Fact]
    public async Task PublishReachesSubscribers()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        Assert.Equal("*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n", await subscriber.CommandAsync("SUBSCRIBE", "news"));
        Assert.Equal("*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n", await subscriber.CommandAsync("PSUBSCRIBE", "n*"));
        Assert.Equal(":2", await publisher.CommandAsync("PUBLISH", "news", "hello"));
        Assert.Equal("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n", await subscriber.ReadReplyAsync());
        Assert.Equal("*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n", await subscriber.ReadReplyAsync());
        Assert.StartsWith("-ERR Can't execute 'get'", await subscriber.CommandAsync("GET", "x"), StringComparison.Ordinal);
        Assert.Equal("*2\r\n$4\r\npong\r\n$0\r\n\r\n", await subscriber.CommandAsync("PING"));
    }

    [Fact]
    public async Task ServerCommandsClientsAsk()
    {
        await using var client = await ConnectAsync();
        string config = await client.CommandAsync("CONFIG", "GET", "databases");
        Assert.Equal("*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n", config);
        Assert.Contains("role:master", await client.CommandAsync("INFO", "replication"), StringComparison.Ordinal);
        Assert.Contains("raft_role:leader", await client.CommandAsync("INFO", "raft"), StringComparison.Ordinal);
        Assert.Equal("+OK", await client.CommandAsync("SCRIPT", "FLUSH"));
        Assert.Equal("+OK", await client.CommandAsync("FUNCTION", "FLUSH"));
        Assert.StartsWith("-ERR scripting is not supported", await client.CommandAsync("EVAL", "return 1", "0"), StringComparison.Ordinal);
        Assert.StartsWith("*2\r\n$", await client.CommandAsync("TIME"), StringComparison.Ordinal);
        Assert.StartsWith(":", await client.CommandAsync("COMMAND", "COUNT"), StringComparison.Ordinal);
        Assert.Equal("+OK", await client.CommandAsync("READONLY"));
        Assert.Equal("$-1", await client.CommandAsync("GET", "stale-missing"));
        Assert.Equal("+OK", await client.CommandAsync("READWRITE"));
        Assert.Equal("+OK", await client.CommandAsync("SET", "waited", "1"));
        Assert.Equal(":0", await client.CommandAsync("WAIT", "0", "100"));
    }

    [Fact]
    public async Task LeadingGetsAreAnsweredAsTheGeneralPathAnswersThemInBothModes()
    {
        await using var client = await ConnectAsync();
        Assert.Equal(":1", await client.CommandAsync("HSET", "ro-h", "f", "v"));
        var pipeline = new List<byte>();
        void Add(params string[] arguments) => pipeline.AddRange(RawClient.Encode(arguments));
        Add("GET", "ro-a");
        Add("get", "ro-a");
        Add("gEt", "ro-missing");
        Add("GET", "ro-h");
        Add("GET", "");
        Add("STRLEN", "ro-a");
        Add("GET", "ro-a");
        Add("GET", "ro-a", "extra");
        pipeline.AddRange("GET ro-a\r\n"u8.ToArray());
        Add("SET", "ro-a", "beta");
        Add("GET", "ro-a");
        string alpha = "$5\r\nalpha\r\n";
        string[] expected = [alpha, alpha, "$-1", "-WRONGTYPE Operation against a key holding the wrong kind of value", "$-1", ":5",
            alpha, "-ERR wrong number of arguments for 'get' command", alpha, "+OK", "$4\r\nbeta\r\n"];

        async Task<List<string>> AnswersAsync(byte[] bytes, int count)
        {
            Assert.Equal("+OK", await client.CommandAsync("SET", "ro-a", "alpha"));
            await client.SendAsync(bytes);
            var replies = new List<string>();
            for (int i = 0; i < count; i++)
            {
                replies.Add(await client.ReadReplyAsync());
            }

            return replies;
        }

        foreach (string mode in new[] { "READWRITE", "READONLY" })
        {
            // At the head of what arrived the first GETs take the shortcut; behind a PING, the general path.
            Assert.Equal("+OK", await client.CommandAsync(mode));
            Assert.Equal(expected, await AnswersAsync([.. pipeline], expected.Length));
            Assert.Equal(["+PONG", .. expected], await AnswersAsync([.. RawClient.Encode("PING"), .. pipeline], expected.Length + 1));
        }

        // Lengths the shortcut leaves to the parser (a leading zero, a key over this node's 1 KiB bulk limit): the
        // same protocol error and close in both modes, after the GET before them.
        foreach (string mode in new[] { "READWRITE", "READONLY" })
        {
            foreach (string bad in new[] { "$04\r\nro-a", "$1025\r\n" + new string('k', 1025) })
            {
                await using var other = await ConnectAsync();
                Assert.Equal("+OK", await other.CommandAsync(mode));
                await other.SendAsync([.. RawClient.Encode("GET", "ro-a"), .. Encoding.ASCII.GetBytes($"*2\r\n$3\r\nGET\r\n{bad}\r\n")]);
                Assert.Equal("$4\r\nbeta\r\n", await other.ReadReplyAsync());
                Assert.Equal("-ERR Protocol error: invalid bulk length", await other.ReadReplyAsync());
                Assert.True(await other.IsClosedAsync(TimeSpan.FromSeconds(10)));
                Assert.Equal("+PONG", await client.CommandAsync("PING")); // not idle for the 3 s that close it
            }
        }

        // A GET split across reads, and one whose key arrives byte by byte.
        byte[] get = RawClient.Encode("GET", "ro-a");
        await client.SendAsync(get[..5]);
        await client.SendAsync(get[5..]);
        Assert.Equal("$4\r\nbeta\r\n", await client.ReadReplyAsync());
        foreach (byte b in get)
        {
            await client.SendAsync([b]);
        }

        Assert.Equal("$4\r\nbeta\r\n", await client.ReadReplyAsync());
        Assert.Equal("+OK", await client.CommandAsync("READWRITE"));
    }

    [Fact]
    public async Task LinearizableGetsInAPipelineReadTheWritesBeforeThem()
    {
        await using var client = await ConnectAsync();
        await using var other = await ConnectAsync();
        Assert.Equal("+OK", await other.CommandAsync("SET", "ryw-other", "before"));
        var pipeline = new List<byte>();
        void Add(params string[] arguments) => pipeline.AddRange(RawClient.Encode(arguments));
        Add("GET", "ryw-other");
        Add("GET", "ryw");
        Add("SET", "ryw", "v1");
        Add("GET", "ryw");
        Add("GET", "ryw");
        Add("INCR", "ryw-n");
        Add("GET", "ryw-n");
        Add("DEL", "ryw");
        Add("GET", "ryw");
        Add("SET", "ryw", "v2");
        Add("GET", "ryw");
        string[] expected = ["$6\r\nbefore\r\n", "$-1", "+OK", "$2\r\nv1\r\n", "$2\r\nv1\r\n", ":1", "$1\r\n1\r\n", ":1", "$-1", "+OK", "$2\r\nv2\r\n"];
        await client.SendAsync([.. pipeline]);
        var replies = new List<string>();
        for (int i = 0; i < expected.Length; i++)
        {
            replies.Add(await client.ReadReplyAsync());
        }

        Assert.Equal(expected, replies);
        Assert.Equal("+OK", await other.CommandAsync("SET", "ryw", "v3"));
        Assert.Equal("$2\r\nv3\r\n", await client.CommandAsync("GET", "ryw"));
    }

    [Fact]
    public async Task GetsInsideMultiAreQueued()
    {
        await using var client = await ConnectAsync();
        Assert.Equal("+OK", await client.CommandAsync("SET", "lg-tx", "one"));
        Assert.Equal("+OK", await client.CommandAsync("MULTI"));
        Assert.Equal("+QUEUED", await client.CommandAsync("GET", "lg-tx"));
        await client.SendAsync([.. RawClient.Encode("GET", "lg-tx"), .. RawClient.Encode("GET", "lg-none")]);
        Assert.Equal("+QUEUED", await client.ReadReplyAsync());
        Assert.Equal("+QUEUED", await client.ReadReplyAsync());
        Assert.Equal("*3\r\n$3\r\none\r\n$3\r\none\r\n$-1\r\n", await client.CommandAsync("EXEC"));
    }

    [Fact]
    public async Task GetsBeforeAuthAreRefused()
    {
        await using (var writer = await RawClient.ConnectAsync(fixture.SecuredPort))
        {
            Assert.Equal("+OK", await writer.CommandAsync("AUTH", ProtocolFixture.Token));
            Assert.Equal("+OK", await writer.CommandAsync("SET", "lg-secret", "s"));
        }

        await using var client = await RawClient.ConnectAsync(fixture.SecuredPort);
        Assert.Equal("-NOAUTH Authentication required.", await client.CommandAsync("GET", "lg-secret"));
        await client.SendAsync([.. RawClient.Encode("GET", "lg-secret"), .. RawClient.Encode("AUTH", ProtocolFixture.Token), .. RawClient.Encode("GET", "lg-secret")]);
        Assert.Equal("-NOAUTH Authentication required.", await client.ReadReplyAsync());
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal("$1\r\ns\r\n", await client.ReadReplyAsync());
        Assert.Equal("$1\r\ns\r\n", await client.CommandAsync("GET", "lg-secret"));
    }

    [Theory]
    [InlineData("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", 3)]
    [InlineData("*2\r\n$3\r\nget\r\n$3\r\nkey\r\n*2\r\n", 3)]
    [InlineData("*2\r\n$3\r\nGeT\r\n$0\r\n\r\n", 0)]
    [InlineData("*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n", 10)]
    [InlineData("*2\r\n$3\r\nGET\r\n$3\r\nkey\r", -1)]
    [InlineData("*2\r\n$3\r\nGET\r\n$3\r\nkeyX\r\n", -1)]
    [InlineData("*2\r\n$3\r\nGET\r\n$03\r\nkey\r\n", -1)]
    [InlineData("*2\r\n$3\r\nGET\r\n$-1\r\nkey\r\n", -1)]
    [InlineData("*2\r\n$3\r\nGET\r\n$11\r\n01234567890\r\n", -1)]
    [InlineData("*2\r\n$3\r\nGEX\r\n$3\r\nkey\r\n", -1)]
    [InlineData("*3\r\n$3\r\nGET\r\n$3\r\nkey\r\n$1\r\nx\r\n", -1)]
    [InlineData("GET key\r\n", -1)]
    public void TheGetShortcutMatchesOnlyAWholeGet(string text, int keyLength)
    {
        bool matched = Stcache.Server.Resp.RespConnection.TryMatchGet(Encoding.ASCII.GetBytes(text), 10, out int start, out int length);
        Assert.Equal(keyLength >= 0, matched);
        if (matched)
        {
            Assert.Equal(keyLength, length);
            Assert.Equal("\r\n", text.Substring(start + length, 2));
        }
    }

    /// <summary>Plain SETs in a pipeline are made into their entries as they are read: they must still be queued
    /// after MULTI, refused while subscribed or after RESET drops the authentication, and answered in order among
    /// other writes, as the general path answers them.</summary>
    [Fact]
    public async Task PlainSetsInAPipelineAreAnsweredAsTheGeneralPathAnswersThem()
    {
        await using var client = await ConnectAsync();
        string id = (await client.CommandAsync("CLIENT", "ID"))[1..];
        await client.SendAsync([.. RawClient.Encode("SET", "ps-m", "1"), .. RawClient.Encode("INCR", "ps-m"), .. RawClient.Encode("SET", "ps-m", "5", "XX", "GET"),
            .. RawClient.Encode("set", "ps-m", "7"), .. RawClient.Encode("SET", "ps-empty", ""), .. RawClient.Encode("GET", "ps-m"), .. RawClient.Encode("GET", "ps-empty")]);
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal(":2", await client.ReadReplyAsync());
        Assert.Equal("$1\r\n2\r\n", await client.ReadReplyAsync());
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal("$1\r\n7\r\n", await client.ReadReplyAsync());
        Assert.Equal("$0\r\n\r\n", await client.ReadReplyAsync());
        Assert.Equal("+OK", await client.CommandAsync("SET", "ps-last", "x"));
        await using (var observer = await ConnectAsync())
        {
            Assert.Contains(" cmd=set ", await observer.CommandAsync("CLIENT", "LIST", "ID", id), StringComparison.Ordinal);
        }

        string largest = new('v', 1024);
        await client.SendAsync([.. RawClient.Encode("SET", "ps-large", largest), .. RawClient.Encode("GET", "ps-large")]);
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal($"$1024\r\n{largest}\r\n", await client.ReadReplyAsync());

        await client.SendAsync([.. RawClient.Encode("MULTI"), .. RawClient.Encode("SET", "ps-tx", "a"), .. RawClient.Encode("SET", "ps-tx", "b", "GET"), .. RawClient.Encode("EXEC")]);
        Assert.Equal("+OK", await client.ReadReplyAsync());
        Assert.Equal("+QUEUED", await client.ReadReplyAsync());
        Assert.Equal("+QUEUED", await client.ReadReplyAsync());
        Assert.Equal("*2\r\n+OK\r\n$1\r\na\r\n", await client.ReadReplyAsync());

        await using var subscriber = await ConnectAsync();
        await subscriber.SendAsync([.. RawClient.Encode("SUBSCRIBE", "ps-news"), .. RawClient.Encode("SET", "ps-sub", "x")]);
        Assert.Equal("*3\r\n$9\r\nsubscribe\r\n$7\r\nps-news\r\n:1\r\n", await subscriber.ReadReplyAsync());
        Assert.StartsWith("-ERR Can't execute 'set'", await subscriber.ReadReplyAsync(), StringComparison.Ordinal);
        Assert.Equal("$-1", await client.CommandAsync("GET", "ps-sub"));

        await using var secured = await RawClient.ConnectAsync(fixture.SecuredPort);
        Assert.Equal("+OK", await secured.CommandAsync("AUTH", ProtocolFixture.Token));
        await secured.SendAsync([.. RawClient.Encode("RESET"), .. RawClient.Encode("SET", "ps-secret", "x")]);
        Assert.Equal("+RESET", await secured.ReadReplyAsync());
        Assert.Equal("-NOAUTH Authentication required.", await secured.ReadReplyAsync());
        Assert.Equal("+OK", await secured.CommandAsync("AUTH", ProtocolFixture.Token));
        Assert.Equal("$-1", await secured.CommandAsync("GET", "ps-secret"));
    }

    [Fact]
    public async Task MaxClientsRefusesTheExcess()
    {
        var held = new List<RawClient>();
        try
        {
            // Other tests of this class run one at a time, so only these connections are open.
            for (int i = 0; i < 6; i++)
            {
                var client = await ConnectAsync();
                held.Add(client);
                Assert.Equal("+PONG", await client.CommandAsync("PING"));
            }

            await using var refused = await ConnectAsync();
            Assert.Equal("-ERR max number of clients reached", await refused.ReadReplyAsync());
            Assert.True(await refused.IsClosedAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            foreach (var client in held)
            {
                await client.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task IdleConnectionsAreClosed()
    {
        await using var client = await ConnectAsync();
        Assert.Equal("+PONG", await client.CommandAsync("PING"));
        Assert.True(await client.IsClosedAsync(TimeSpan.FromSeconds(15)));
    }

    /// <summary>
    /// Clients that send and never read fill their sockets; the node's replies to them wait (asynchronously) and
    /// every other connection is still served. With --io-threads inline (the default) the connections share the
    /// runtime's socket threads, so a reply that blocked its thread would stall the others.
    /// </summary>
    [Fact]
    public async Task ClientsThatDoNotReadDelayNoOtherConnection()
    {
        await using var bystander = await ConnectAsync();
        Assert.Equal("+OK", await bystander.CommandAsync("SET", "wide", new string('w', 1000)));

        // Each asks for about 20 MB of replies, more than the kernel's socket buffers hold, and reads none of it.
        byte[] requests = [.. Enumerable.Range(0, 20_000).SelectMany(_ => RawClient.Encode("GET", "wide"))];
        var slow = new List<RawClient>();
        var sends = new List<Task>();
        try
        {
            for (int i = 0; i < 3; i++)
            {
                var client = await ConnectAsync();
                slow.Add(client);
                sends.Add(client.SendAsync(requests)); // not awaited: once the node stops reading, it cannot finish
            }

            for (int round = 0; round < 20; round++)
            {
                Assert.Equal("+PONG", await bystander.CommandAsync("PING"));
                await bystander.SendAsync(RawClient.Encode("GET", "wide"));
                Assert.StartsWith("$1000\r\n", await bystander.ReadReplyAsync(TimeSpan.FromSeconds(5)), StringComparison.Ordinal);
            }

            // The stalled connections were alive all along: one still reads its first reply.
            Assert.StartsWith("$1000\r\n", await slow[0].ReadReplyAsync(TimeSpan.FromSeconds(5)), StringComparison.Ordinal);
        }
        finally
        {
            foreach (var client in slow)
            {
                await client.DisposeAsync();
            }

            await Task.WhenAll(sends.Select(async send =>
            {
                try
                {
                    await send;
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException)
                {
                    // closed while the node was not reading: expected
                }
            }));
        }
    }

    [Fact]
    public async Task AuthTokenIsRequired()
    {
        await using var client = await RawClient.ConnectAsync(fixture.SecuredPort);
        Assert.Equal("-NOAUTH Authentication required.", await client.CommandAsync("GET", "k"));
        Assert.Equal("-WRONGPASS invalid username-password pair or user is disabled.", await client.CommandAsync("AUTH", "wrong"));
        Assert.StartsWith("%7", await client.CommandAsync("HELLO", "3", "AUTH", "default", ProtocolFixture.Token), StringComparison.Ordinal);
        Assert.Equal("+OK", await client.CommandAsync("SET", "k", "v"));

        await using var second = await RawClient.ConnectAsync(fixture.SecuredPort);
        Assert.Equal("+OK", await second.CommandAsync("AUTH", ProtocolFixture.Token));
        Assert.Equal("$1\r\nv\r\n", await second.CommandAsync("GET", "k"));

        await using var greedy = await RawClient.ConnectAsync(fixture.SecuredPort);
        await greedy.SendAsync(System.Text.Encoding.ASCII.GetBytes("*11\r\n"));
        Assert.Equal("-ERR Protocol error: unauthenticated multibulk length", await greedy.ReadReplyAsync());
    }
}
