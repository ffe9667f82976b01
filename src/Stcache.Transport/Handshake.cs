using System.Security.Cryptography;
using System.Text;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>
/// Connection handshake, pure encoding and proofs. The dialer sends Hello (cluster id, its id, the id it wants
/// to reach, nonce A); the listener checks cluster and target and answers Challenge (nonce B and, with a
/// secret, HMAC-SHA256 over the transcript labelled "listener"); the dialer checks that proof and sends Proof
/// (HMAC over the transcript labelled "dialer"); the listener checks it and sends Accepted. Without a secret
/// both proofs are empty, and a side with a secret refuses an empty proof. Distinct labels stop a proof being
/// reflected back to its author; fresh nonces on both sides stop replays.
/// </summary>
internal static class Handshake
{
    public const int NonceBytes = 32;
    public const int MacBytes = 32;
    public const int ClusterIdBytesMax = 255;

    /// <summary>Bound on any handshake frame body; larger lengths during the handshake are refused at once.</summary>
    public const int FrameBytesMax = 1 + ClusterIdBytesMax + 8 + 8 + NonceBytes + 1 + MacBytes;

    private static readonly byte[] s_listenerLabel = "stcache/1 listener"u8.ToArray();
    private static readonly byte[] s_dialerLabel = "stcache/1 dialer"u8.ToArray();

    public readonly record struct Hello(string ClusterId, NodeId From, NodeId To, byte[] Nonce);

    public readonly record struct Challenge(NodeId From, NodeId To, byte[] Nonce, byte[] Mac);

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceBytes);

    public static byte[] EncodeHello(Hello hello)
    {
        int idLength = Encoding.UTF8.GetByteCount(hello.ClusterId);
        var bytes = new byte[1 + idLength + 8 + 8 + NonceBytes];
        var writer = new SpanWriter(bytes);
        writer.WriteByte((byte)idLength);
        writer.WriteFixed(Encoding.UTF8.GetBytes(hello.ClusterId));
        writer.WriteUInt64(hello.From.Value);
        writer.WriteUInt64(hello.To.Value);
        writer.WriteFixed(hello.Nonce);
        return bytes;
    }

    public static bool TryDecodeHello(ReadOnlySpan<byte> body, out Hello hello)
    {
        hello = default;
        var reader = new SpanReader(body);
        if (!reader.TryReadByte(out byte idLength)
            || !reader.TryReadFixed(idLength, out var idBytes)
            || !reader.TryReadUInt64(out ulong from)
            || !reader.TryReadUInt64(out ulong to)
            || !reader.TryReadFixed(NonceBytes, out var nonce)
            || reader.Remaining != 0)
        {
            return false;
        }

        string clusterId;
        try
        {
            clusterId = new UTF8Encoding(false, true).GetString(idBytes);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        hello = new Hello(clusterId, new NodeId(from), new NodeId(to), nonce.ToArray());
        return true;
    }

    public static byte[] EncodeChallenge(Challenge challenge)
    {
        var bytes = new byte[8 + 8 + NonceBytes + 1 + challenge.Mac.Length];
        var writer = new SpanWriter(bytes);
        writer.WriteUInt64(challenge.From.Value);
        writer.WriteUInt64(challenge.To.Value);
        writer.WriteFixed(challenge.Nonce);
        writer.WriteByte((byte)challenge.Mac.Length);
        writer.WriteFixed(challenge.Mac);
        return bytes;
    }

    public static bool TryDecodeChallenge(ReadOnlySpan<byte> body, out Challenge challenge)
    {
        challenge = default;
        var reader = new SpanReader(body);
        if (!reader.TryReadUInt64(out ulong from)
            || !reader.TryReadUInt64(out ulong to)
            || !reader.TryReadFixed(NonceBytes, out var nonce)
            || !reader.TryReadByte(out byte macLength)
            || (macLength != 0 && macLength != MacBytes)
            || !reader.TryReadFixed(macLength, out var mac)
            || reader.Remaining != 0)
        {
            return false;
        }

        challenge = new Challenge(new NodeId(from), new NodeId(to), nonce.ToArray(), mac.ToArray());
        return true;
    }

    public static byte[] EncodeProof(byte[] mac)
    {
        var bytes = new byte[1 + mac.Length];
        bytes[0] = (byte)mac.Length;
        mac.CopyTo(bytes, 1);
        return bytes;
    }

    public static bool TryDecodeProof(ReadOnlySpan<byte> body, out byte[] mac)
    {
        mac = [];
        var reader = new SpanReader(body);
        if (!reader.TryReadByte(out byte macLength)
            || (macLength != 0 && macLength != MacBytes)
            || !reader.TryReadFixed(macLength, out var macBytes)
            || reader.Remaining != 0)
        {
            return false;
        }

        mac = macBytes.ToArray();
        return true;
    }

    /// <summary>The listener's proof; empty without a secret.</summary>
    public static byte[] ListenerMac(byte[]? secret, in Hello hello, byte[] listenerNonce) =>
        Mac(secret, s_listenerLabel, hello, listenerNonce);

    /// <summary>The dialer's proof; empty without a secret.</summary>
    public static byte[] DialerMac(byte[]? secret, in Hello hello, byte[] listenerNonce) =>
        Mac(secret, s_dialerLabel, hello, listenerNonce);

    /// <summary>True when <paramref name="received"/> is the expected proof (both empty when there is no secret).</summary>
    public static bool Verify(byte[] expected, byte[] received) =>
        expected.Length == received.Length && CryptographicOperations.FixedTimeEquals(expected, received);

    private static byte[] Mac(byte[]? secret, byte[] label, in Hello hello, byte[] listenerNonce)
    {
        if (secret is null)
        {
            return [];
        }

        // Transcript: label, then the Hello exactly as sent (cluster id, both ids, dialer nonce), then the
        // listener's nonce. Binding the ids stops a proof for one pair of nodes being used for another.
        byte[] helloBytes = EncodeHello(hello);
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, secret);
        hmac.AppendData(label);
        hmac.AppendData(helloBytes);
        hmac.AppendData(listenerNonce);
        return hmac.GetHashAndReset();
    }
}
