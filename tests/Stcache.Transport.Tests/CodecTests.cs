using System.Buffers;
using System.Buffers.Binary;
using Stcache.Raft;
using Xunit.Abstractions;

namespace Stcache.Transport.Tests;

public sealed class CodecTests
{
    private const int FrameMax = 64 * 1024 * 1024;
    private readonly ITestOutputHelper _output;

    public CodecTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public void RoundTripsEveryField()
    {
        var message = new Message
        {
            Type = MessageType.Append,
            From = new NodeId(1),
            To = new NodeId(2),
            Term = new Term(9),
            LogTerm = new Term(7),
            Index = new LogIndex(41),
            Commit = new LogIndex(40),
            Reject = true,
            RejectHint = new LogIndex(12),
            Entries =
            [
                new Entry(new Term(7), new LogIndex(42), EntryType.Normal, new byte[] { 1, 2, 3 }),
                new Entry(new Term(9), new LogIndex(43), EntryType.ConfChange, new ConfChange(ConfChangeType.AddVoter, new NodeId(4), "x"u8.ToArray()).Encode()),
                new Entry(new Term(9), new LogIndex(44), EntryType.Normal, ReadOnlyMemory<byte>.Empty),
            ],
        };
        var decoded = RoundTrip(message);
        TestMessages.AssertSame(message, decoded);

        var snapshot = TestMessages.Snapshot(3, 1, [5, 6, 7, 8]);
        TestMessages.AssertSame(snapshot, RoundTrip(snapshot));
    }

    [Fact]
    public void EntriesOfOneMessageShareOneArrayAndOwnNothingOfTheInput()
    {
        var message = new Message
        {
            Type = MessageType.Append, From = new NodeId(1), To = new NodeId(2), Term = new Term(3), LogTerm = new Term(3),
            Index = new LogIndex(9), Commit = new LogIndex(8),
            Entries =
            [
                new Entry(new Term(3), new LogIndex(10), EntryType.Normal, new byte[] { 1, 2, 3 }),
                new Entry(new Term(3), new LogIndex(11), EntryType.Normal, ReadOnlyMemory<byte>.Empty),
                new Entry(new Term(3), new LogIndex(12), EntryType.Normal, new byte[] { 4, 5 }),
            ],
        };
        byte[] bytes = MessageCodec.Encode(message);
        Assert.Equal(DecodeStatus.Complete, MessageCodec.TryDecode(bytes, FrameMax, out var decoded, out _, out _));
        Array.Clear(bytes); // the receive buffer is reused: the entries must not point into it

        Assert.Equal(new byte[] { 1, 2, 3 }, decoded!.Entries[0].Data.ToArray());
        Assert.True(decoded.Entries[1].Data.IsEmpty);
        Assert.Equal(new byte[] { 4, 5 }, decoded.Entries[2].Data.ToArray());
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(decoded.Entries[0].Data, out var first));
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(decoded.Entries[2].Data, out var last));
        Assert.Same(first.Array, last.Array);
        Assert.Equal(5, first.Array!.Length);
    }

    [Fact]
    public void ReadIndexAnswerCarriesTheLeadersReadTime()
    {
        var answer = new Message
        {
            Type = MessageType.ReadIndexResponse, From = new NodeId(1), To = new NodeId(2), Term = new Term(3),
            Index = new LogIndex(17), RequestId = 99, ReadTimeUnixMs = 1_790_000_000_123,
        };
        var decoded = RoundTrip(answer);
        TestMessages.AssertSame(answer, decoded);
        Assert.Equal(1_790_000_000_123, decoded.ReadTimeUnixMs);
        Assert.Equal(0, RoundTrip(answer with { ReadTimeUnixMs = 0 }).ReadTimeUnixMs);

        // A read time on any other message is refused.
        byte[] bytes = MessageCodec.Encode(answer with { Type = MessageType.Heartbeat });
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(bytes, FrameMax, out _, out _, out string? error));
        Assert.NotNull(error);
    }

    [Fact]
    public void RandomMessagesRoundTripThroughSpansAndSegmentedSequences()
    {
        int seed = Environment.GetEnvironmentVariable("STCACHE_SEED") is { } s ? int.Parse(s) : Random.Shared.Next();
        _output.WriteLine($"seed {seed} (replay with STCACHE_SEED={seed})");
        var random = new Random(seed);
        for (int i = 0; i < 2000; i++)
        {
            var message = TestMessages.Random(random);
            byte[] bytes = MessageCodec.Encode(message);
            Assert.Equal(bytes.Length, MessageCodec.GetEncodedLength(message));

            Assert.Equal(DecodeStatus.Complete, MessageCodec.TryDecode(bytes, FrameMax, out var fromSpan, out int consumed, out string? error));
            Assert.Null(error);
            Assert.Equal(bytes.Length, consumed);
            TestMessages.AssertSame(message, fromSpan!);

            var sequence = Segmented(bytes, random);
            Assert.Equal(DecodeStatus.Complete, MessageCodec.TryDecode(sequence, FrameMax, out var fromSequence, out long used, out _));
            Assert.Equal(bytes.Length, used);
            TestMessages.AssertSame(message, fromSequence!);
        }
    }

    [Fact]
    public void EveryTruncationOfAFrameNeedsMoreData()
    {
        var random = new Random(7);
        var messages = Enumerable.Range(0, 5).Select(_ => TestMessages.Random(random)).ToList();
        byte[] frame = MessagesFrame(messages);

        for (int length = 0; length < frame.Length; length++)
        {
            var buffer = new ReadOnlySequence<byte>(frame, 0, length);
            Assert.Equal(DecodeStatus.NeedMoreData, FrameCodec.TryReadFrame(ref buffer, FrameMax, out _, out _, out _));
            Assert.Equal(length, buffer.Length);
        }

        byte[] single = MessageCodec.Encode(messages[0]);
        for (int length = 0; length < single.Length; length++)
        {
            Assert.Equal(DecodeStatus.NeedMoreData, MessageCodec.TryDecode(single.AsSpan(0, length), FrameMax, out _, out _, out _));
        }

        var whole = new ReadOnlySequence<byte>(frame);
        Assert.Equal(DecodeStatus.Complete, FrameCodec.TryReadFrame(ref whole, FrameMax, out var type, out var body, out _));
        Assert.True(whole.IsEmpty);
        Assert.Equal(FrameType.Messages, type);
        var decoded = new List<Message>();
        Assert.Equal(DecodeStatus.Complete, FrameCodec.TryDecodeMessages(body, decoded, out _));
        Assert.Equal(messages.Count, decoded.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            TestMessages.AssertSame(messages[i], decoded[i]);
        }

        // The same frame split across buffer segments at random points decodes the same.
        for (int round = 0; round < 200; round++)
        {
            var segmented = Segmented(frame, random);
            Assert.Equal(DecodeStatus.Complete, FrameCodec.TryReadFrame(ref segmented, FrameMax, out _, out var segmentedBody, out _));
            Assert.Equal(DecodeStatus.Complete, FrameCodec.TryDecodeMessages(segmentedBody, decoded, out _));
            for (int i = 0; i < messages.Count; i++)
            {
                TestMessages.AssertSame(messages[i], decoded[i]);
            }
        }
    }

    [Fact]
    public void BitFlipsAndGarbageNeverThrow()
    {
        int seed = Random.Shared.Next();
        _output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var messages = new List<Message> { TestMessages.Random(random), TestMessages.Heartbeat(1, 2), TestMessages.Snapshot(1, 2, [1, 2, 3]) };
        messages[0] = messages[0] with { Type = MessageType.Append, Entries = [new Entry(messages[0].LogTerm, messages[0].Index.Next, EntryType.Normal, new byte[] { 9 })] };
        byte[] frame = MessagesFrame(messages);
        var decoded = new List<Message>();
        for (int bit = 0; bit < frame.Length * 8; bit++)
        {
            byte[] flipped = (byte[])frame.Clone();
            flipped[bit / 8] ^= (byte)(1 << (bit % 8));
            DecodeAll(flipped, decoded);
        }

        for (int i = 0; i < 20_000; i++)
        {
            byte[] garbage = new byte[random.Next(0, 200)];
            random.NextBytes(garbage);
            if (garbage.Length > 0 && random.Next(2) == 0)
            {
                garbage[0] = FrameCodec.ProtocolVersion;
            }

            DecodeAll(garbage, decoded);
            MessageCodec.TryDecodeBody(garbage, out _, out _);
            Handshake.TryDecodeHello(garbage, out _);
            Handshake.TryDecodeChallenge(garbage, out _);
            Handshake.TryDecodeProof(garbage, out _);
        }
    }

    [Fact]
    public void AbsurdLengthsAndCountsAreMalformed()
    {
        // Frame length above the limit.
        byte[] header = new byte[FrameCodec.HeaderBytes];
        FrameCodec.WriteHeader(header, FrameType.Messages, int.MaxValue);
        var buffer = new ReadOnlySequence<byte>(header);
        Assert.Equal(DecodeStatus.Malformed, FrameCodec.TryReadFrame(ref buffer, FrameMax, out _, out _, out _));

        // Wrong version and unknown type are refused from the first bytes.
        var wrongVersion = new ReadOnlySequence<byte>(new byte[] { 77 });
        Assert.Equal(DecodeStatus.Malformed, FrameCodec.TryReadFrame(ref wrongVersion, FrameMax, out _, out _, out _));
        var unknownType = new ReadOnlySequence<byte>(new byte[] { FrameCodec.ProtocolVersion, 200 });
        Assert.Equal(DecodeStatus.Malformed, FrameCodec.TryReadFrame(ref unknownType, FrameMax, out _, out _, out _));

        // Message count larger than the frame could hold.
        byte[] countOnly = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(countOnly, uint.MaxValue);
        Assert.Equal(DecodeStatus.Malformed, FrameCodec.TryDecodeMessages(new ReadOnlySequence<byte>(countOnly), [], out _));

        // Entry count larger than the message could hold.
        var append = TestMessages.Heartbeat(1, 2) with { Type = MessageType.Append };
        byte[] bytes = MessageCodec.Encode(append);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), uint.MaxValue);
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(bytes, FrameMax, out _, out _, out string? error));
        Assert.NotNull(error);

        // Message length above the caller's bound.
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(bytes, 16, out _, out _, out _));
    }

    [Fact]
    public void TheContextSlotCarriesOneMeaningPerMessageType()
    {
        var vote = new Message { Type = MessageType.PreVote, From = new NodeId(1), To = new NodeId(2), Term = new Term(3), Campaign = CampaignKind.Transfer };
        Assert.Equal(CampaignKind.Transfer, RoundTrip(vote).Campaign);
        var heartbeat = TestMessages.Heartbeat(1, 2, round: 41);
        var decodedHeartbeat = RoundTrip(heartbeat);
        Assert.Equal(41UL, decodedHeartbeat.Round);
        Assert.Equal(0UL, decodedHeartbeat.RequestId);
        var read = new Message { Type = MessageType.ReadIndexResponse, From = new NodeId(2), To = new NodeId(1), Term = new Term(3), Index = new LogIndex(9), RequestId = 77 };
        var decodedRead = RoundTrip(read);
        Assert.Equal(77UL, decodedRead.RequestId);
        Assert.Equal(0UL, decodedRead.Round);

        // The slot sits after the fixed fields before it: type, from, to, term, logTerm, index, commit, flags, rejectHint.
        const int slot = MessageCodec.LengthPrefixBytes + 1 + (8 * 6) + 1 + 8;

        // Another build's value in the slot of a type that carries none is ignored, not handed to Raft.
        byte[] append = MessageCodec.Encode(new Message { Type = MessageType.Append, From = new NodeId(1), To = new NodeId(2), Term = new Term(3) });
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(append.AsSpan(slot), 0x4A4F494E52455131);
        Assert.Equal(DecodeStatus.Complete, MessageCodec.TryDecode(append, FrameMax, out var decodedAppend, out _, out _));
        Assert.Equal((CampaignKind.Election, 0UL, 0UL), (decodedAppend!.Campaign, decodedAppend.Round, decodedAppend.RequestId));

        // A vote with a campaign kind this build does not know is refused.
        byte[] badVote = MessageCodec.Encode(vote);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(badVote.AsSpan(slot), 2);
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(badVote, FrameMax, out _, out _, out string? error));
        Assert.Equal("unknown campaign kind", error);
    }

    [Fact]
    public void MessagesFailingValidationAreMalformed()
    {
        var toSelf = TestMessages.Heartbeat(1, 1);
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(MessageCodec.Encode(toSelf), FrameMax, out var message, out _, out string? error));
        Assert.Null(message);
        Assert.Equal("message addressed to its sender", error);

        var gap = TestMessages.Heartbeat(1, 2) with
        {
            Type = MessageType.Append,
            Entries = [new Entry(new Term(3), new LogIndex(5), EntryType.Normal, ReadOnlyMemory<byte>.Empty)],
        };
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(MessageCodec.Encode(gap), FrameMax, out _, out _, out _));

        byte[] unknownType = MessageCodec.Encode(TestMessages.Heartbeat(1, 2));
        unknownType[MessageCodec.LengthPrefixBytes] = 99;
        Assert.Equal(DecodeStatus.Malformed, MessageCodec.TryDecode(unknownType, FrameMax, out _, out _, out _));
    }

    [Fact]
    public void HandshakeFramesRoundTrip()
    {
        var hello = new Handshake.Hello("cluster-é", new NodeId(1), new NodeId(2), Handshake.NewNonce());
        Assert.True(Handshake.TryDecodeHello(Handshake.EncodeHello(hello), out var decodedHello));
        Assert.Equal(hello.ClusterId, decodedHello.ClusterId);
        Assert.Equal(hello.From, decodedHello.From);
        Assert.Equal(hello.To, decodedHello.To);
        Assert.Equal(hello.Nonce, decodedHello.Nonce);

        byte[] secret = new byte[32];
        byte[] nonce = Handshake.NewNonce();
        byte[] listenerMac = Handshake.ListenerMac(secret, hello, nonce);
        byte[] dialerMac = Handshake.DialerMac(secret, hello, nonce);
        Assert.NotEqual(listenerMac, dialerMac);
        Assert.Empty(Handshake.ListenerMac(null, hello, nonce));

        var challenge = new Handshake.Challenge(new NodeId(2), new NodeId(1), nonce, listenerMac);
        Assert.True(Handshake.TryDecodeChallenge(Handshake.EncodeChallenge(challenge), out var decodedChallenge));
        Assert.True(Handshake.Verify(listenerMac, decodedChallenge.Mac));
        Assert.True(Handshake.TryDecodeProof(Handshake.EncodeProof(dialerMac), out byte[] proof));
        Assert.True(Handshake.Verify(dialerMac, proof));
        Assert.False(Handshake.Verify(dialerMac, []));
        Assert.False(Handshake.Verify(dialerMac, Handshake.DialerMac(new byte[32].Select(_ => (byte)1).ToArray(), hello, nonce)));
    }

    private static void DecodeAll(byte[] bytes, List<Message> decoded)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var status = FrameCodec.TryReadFrame(ref buffer, FrameMax, out var type, out var body, out _);
        if (status == DecodeStatus.Complete && type == FrameType.Messages)
        {
            var result = FrameCodec.TryDecodeMessages(body, decoded, out _);
            Assert.NotEqual(DecodeStatus.NeedMoreData, result);
        }

        MessageCodec.TryDecode(bytes, FrameMax, out _, out _, out _);
    }

    private static byte[] MessagesFrame(List<Message> messages)
    {
        var writer = new ArrayBufferWriter<byte>();
        long body = 4 + messages.Sum(MessageCodec.GetEncodedLength);
        FrameCodec.WriteHeader(writer, FrameType.Messages, (int)body);
        BinaryPrimitives.WriteUInt32LittleEndian(writer.GetSpan(4), (uint)messages.Count);
        writer.Advance(4);
        foreach (var message in messages)
        {
            MessageCodec.Encode(message, writer);
        }

        return writer.WrittenSpan.ToArray();
    }

    private static Message RoundTrip(Message message)
    {
        byte[] bytes = MessageCodec.Encode(message);
        Assert.Equal(DecodeStatus.Complete, MessageCodec.TryDecode(bytes, FrameMax, out var decoded, out int consumed, out string? error));
        Assert.True(error is null, error);
        Assert.Equal(bytes.Length, consumed);
        return decoded!;
    }

    private static ReadOnlySequence<byte> Segmented(byte[] bytes, Random random)
    {
        if (bytes.Length < 3)
        {
            return new ReadOnlySequence<byte>(bytes);
        }

        int cut1 = random.Next(1, bytes.Length - 1);
        int cut2 = random.Next(cut1 + 1, bytes.Length);
        var first = new Segment(bytes.AsMemory(0, cut1), 0);
        var second = first.Append(bytes.AsMemory(cut1, cut2 - cut1));
        var third = second.Append(bytes.AsMemory(cut2));
        return new ReadOnlySequence<byte>(first, 0, third, third.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
