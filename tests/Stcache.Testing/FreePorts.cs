using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Stcache.Testing;

/// <summary>
/// Loopback ports for the servers a test starts. Ports come from below the kernel's ephemeral range
/// (32768 and up on Linux), so an outgoing connection's source port never takes one between the check here and
/// the server's bind; each is checked free by binding it, and one test process never hands the same port out
/// twice. Each process starts at a random point of the range, so test assemblies running side by side rarely
/// meet; a server that still finds its port taken fails to start with "address in use".
/// </summary>
public static class FreePorts
{
    private const int First = 20000;
    private const int Count = 12000;
    private static readonly object s_lock = new();
    private static readonly HashSet<int> s_handedOut = [];
    private static int s_next = Random.Shared.Next(Count);

    public static int Next()
    {
        lock (s_lock)
        {
            for (int attempt = 0; attempt < Count; attempt++)
            {
                int port = First + (s_next++ % Count);
                if (!s_handedOut.Contains(port) && IsFree(port))
                {
                    s_handedOut.Add(port);
                    return port;
                }
            }
        }

        throw new InvalidOperationException($"no free loopback port in {First}..{First + Count - 1}");
    }

    public static string Address(int port) => "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture);

    private static bool IsFree(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
