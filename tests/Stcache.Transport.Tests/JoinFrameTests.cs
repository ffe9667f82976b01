using System.Buffers;
using System.Threading.Channels;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

/// <summary>
/// The raft-port join rides its own frame type, not a Raft message: it reaches <see cref="PeerTransport.JoinReceived"/>
/// named by the handshaken peer and never the message handler; malformed join frames are refused with a reason.
/// </summary>
public sealed class JoinFrameTests
{
    [Fact]
    public async Task JoinFramesTravelBothWaysAndNeverReachTheMessageHandler()
    {
        await using var a = await Node.StartAsync(1);
        await using var b = await Node.StartAsync(2);
        a.Transport.SetPeer(new NodeId(2), b.Address);
        b.Transport.SetPeer(new NodeId(1), a.Address);
        var atA = Channel.CreateUnbounded<(NodeId From, JoinFrame Frame)>();
        var atB = Channel.CreateUnbounded<(NodeId From, JoinFrame Frame)>();
        a.Transport.JoinReceived += (from, frame) => atA.Writer.TryWrite((from, frame));
        b.Transport.JoinReceived += (from, frame) => atB.Writer.TryWrite((from, frame));

        Assert.True(a.Transport.SendJoin(new NodeId(2), new JoinFrame(JoinFrameKind.Request, "{\"id\":1}"u8.ToArray())));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var request = await atB.Reader.ReadAsync(timeout.Token);
        Assert.Equal(new NodeId(1), request.From);
        Assert.Equal(JoinFrameKind.Request, request.Frame.Kind);
        Assert.Equal("{\"id\":1}"u8.ToArray(), request.Frame.Payload.ToArray());

        Assert.True(b.Transport.SendJoin(new NodeId(1), new JoinFrame(JoinFrameKind.Answer, "[]"u8.ToArray())));
        var answer = await atA.Reader.ReadAsync(timeout.Token);
        Assert.Equal(new NodeId(2), answer.From);
        Assert.Equal(JoinFrameKind.Answer, answer.Frame.Kind);

        // Raft messages still flow on the same connections, and no join frame was handed to Raft.
        var heartbeat = TestMessages.Heartbeat(1, 2, 7);
        a.Transport.Send(heartbeat);
        TestMessages.AssertSame(heartbeat, await b.ReceiveAsync());
        Assert.False(a.Received.Reader.TryRead(out _));
        Assert.False(b.Received.Reader.TryRead(out _));
    }

    [Fact]
    public async Task SendJoinRefusesAnUnknownPeerAndAnEmptyPayload()
    {
        await using var a = await Node.StartAsync(1);
        Assert.False(a.Transport.SendJoin(new NodeId(9), new JoinFrame(JoinFrameKind.Request, "x"u8.ToArray())));
        Assert.Throws<ArgumentException>(() => a.Transport.SendJoin(new NodeId(9), new JoinFrame(JoinFrameKind.Request, ReadOnlyMemory<byte>.Empty)));
    }

    [Fact]
    public void BodyRoundTrips()
    {
        var frame = new JoinFrame(JoinFrameKind.Answer, "[{\"id\":3}]"u8.ToArray());
        Assert.Equal(DecodeStatus.Complete, JoinFrame.TryDecodeBody(new ReadOnlySequence<byte>(frame.EncodeBody()), out var decoded, out string? error));
        Assert.Null(error);
        Assert.Equal(frame.Kind, decoded!.Kind);
        Assert.Equal(frame.Payload.ToArray(), decoded.Payload.ToArray());
    }

    [Theory]
    [InlineData(new byte[0], "join frame without a kind")]
    [InlineData(new byte[] { 0, 1, 2 }, "unknown join frame kind")]
    [InlineData(new byte[] { 3, 1, 2 }, "unknown join frame kind")]
    [InlineData(new byte[] { 255 }, "unknown join frame kind")]
    [InlineData(new byte[] { 1 }, "join frame without a payload")]
    [InlineData(new byte[] { 2 }, "join frame without a payload")]
    public void BadBodiesAreMalformedWithAReason(byte[] body, string reason)
    {
        Assert.Equal(DecodeStatus.Malformed, JoinFrame.TryDecodeBody(new ReadOnlySequence<byte>(body), out var frame, out string? error));
        Assert.Null(frame);
        Assert.Equal(reason, error);
    }

    [Fact]
    public async Task AMalformedJoinFrameIsAProtocolViolationAndDeliversNothing()
    {
        // The session's violation is what closes the connection (and is logged with the reason).
        await using var b = await Node.StartAsync(2);
        bool raised = false;
        b.Transport.JoinReceived += (_, _) => raised = true;
        var session = new InboundSession(b.Transport, new NodeId(1));
        Assert.Equal("unknown join frame kind", session.HandleFrame(FrameType.Join, new ReadOnlySequence<byte>(new byte[] { 7, 1 })));
        Assert.Equal("join frame without a payload", session.HandleFrame(FrameType.Join, new ReadOnlySequence<byte>(new byte[] { 1 })));
        Assert.False(raised);
        Assert.Null(session.HandleFrame(FrameType.Join, new ReadOnlySequence<byte>(new byte[] { 1, (byte)'x' })));
        Assert.True(raised);
    }

    [Fact]
    public void TheJoinFrameTypeIsReadByTheFrameReader()
    {
        var writer = new ArrayBufferWriter<byte>();
        FrameCodec.WriteFrame(writer, FrameType.Join, new JoinFrame(JoinFrameKind.Request, "x"u8.ToArray()).EncodeBody());
        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);
        Assert.Equal(DecodeStatus.Complete, FrameCodec.TryReadFrame(ref buffer, 1024, out var type, out var body, out _));
        Assert.Equal(FrameType.Join, type);
        Assert.Equal(2, body.Length);
    }
}
