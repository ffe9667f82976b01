using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// Hostile bytes on a node's Raft port (straight to the node, not through a proxy): garbage, truncated frames,
/// absurd lengths, a wrong protocol version, and a peer of another cluster. Each must end with the connection
/// refused or closed, and a healthy node.
/// </summary>
[Collection(HostileCollection.Name)]
public sealed class HostileRaftPortTests(HostileClusterFixture fixture, ITestOutputHelper output)
{
    private const byte ProtocolVersion = 1;
    private const byte FrameHello = 1;
    private const byte FrameMessages = 5;

    public static TheoryData<string> Attacks => ["garbage", "truncated-frame", "absurd-length", "wrong-version", "unknown-type", "messages-before-handshake", "other-cluster", "hello-then-garbage"];

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Attacks))]
    public async Task Hostile_peer_bytes_are_refused_and_the_node_stays_healthy(string attack)
    {
        var target = fixture.Cluster.Nodes[attack.Length % fixture.Cluster.Nodes.Count];
        byte[] payload = attack switch
        {
            "garbage" => RandomNumberGenerator.GetBytes(32 * 1024),
            "truncated-frame" => Frame(ProtocolVersion, FrameHello, Hello("stcache", 99, target.Id), declaredLength: 1000, truncateTo: 20),
            "absurd-length" => Frame(ProtocolVersion, FrameMessages, [1, 2, 3], declaredLength: uint.MaxValue),
            "wrong-version" => Frame(200, FrameHello, Hello("stcache", 99, target.Id)),
            "unknown-type" => Frame(ProtocolVersion, 250, [0, 0, 0, 0]),
            "messages-before-handshake" => Frame(ProtocolVersion, FrameMessages, [1, 0, 0, 0, 9, 9, 9, 9]),
            "other-cluster" => Frame(ProtocolVersion, FrameHello, Hello("some-other-cluster", 2, target.Id)),
            "hello-then-garbage" => [.. Frame(ProtocolVersion, FrameHello, Hello("stcache", 77, target.Id)), .. RandomNumberGenerator.GetBytes(4096)],
            _ => throw new ArgumentOutOfRangeException(nameof(attack)),
        };

        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, target.RaftPort);
        bool closed = false;
        try
        {
            await socket.SendAsync(payload);
            if (attack != "truncated-frame")
            {
                socket.Shutdown(SocketShutdown.Send);
            }

            // The node must close the connection (promptly, or at its handshake timeout), never accept the stream.
            var buffer = new byte[4096];
            using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            while (true)
            {
                int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
                if (read == 0)
                {
                    closed = true;
                    break;
                }

                output.WriteLine($"{attack}: node answered {read} bytes (type {buffer[1]})");
                Assert.NotEqual(4, buffer[1]); // never "Accepted"
            }
        }
        catch (SocketException e)
        {
            closed = true;
            output.WriteLine($"{attack}: connection reset ({e.SocketErrorCode})");
        }
        catch (OperationCanceledException)
        {
        }

        Assert.True(closed, $"{attack}: the node kept the connection open for 15s");
        await fixture.AssertHealthyAsync("raft-port attack " + attack);
    }

    private static byte[] Hello(string clusterId, ulong from, ulong to)
    {
        byte[] id = Encoding.UTF8.GetBytes(clusterId);
        var body = new List<byte> { (byte)id.Length };
        body.AddRange(id);
        body.AddRange(BitConverter.GetBytes(from));
        body.AddRange(BitConverter.GetBytes(to));
        body.AddRange(RandomNumberGenerator.GetBytes(32));
        return [.. body];
    }

    /// <summary>[u8 version][u8 type][u32 length LE][body], optionally lying about the length or cut short.</summary>
    private static byte[] Frame(byte version, byte type, byte[] body, uint? declaredLength = null, int? truncateTo = null)
    {
        var frame = new byte[6 + body.Length];
        frame[0] = version;
        frame[1] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(2), declaredLength ?? (uint)body.Length);
        body.CopyTo(frame, 6);
        return truncateTo is { } cut ? frame[..cut] : frame;
    }
}
