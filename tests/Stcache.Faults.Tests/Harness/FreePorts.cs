using System.Net;
using System.Net.Sockets;

namespace Stcache.Faults.Tests.Harness;

/// <summary>
/// Loopback ports the OS says are free right now: bind port 0, read the port, close. Another process may take
/// the port before we use it, so callers retry a start that fails with "address in use".
/// </summary>
public static class FreePorts
{
    private static readonly HashSet<int> s_handedOut = [];

    public static int Next()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
            lock (s_handedOut)
            {
                // Never hand the same port out twice in one test run, even after its first user closed it.
                if (s_handedOut.Add(port))
                {
                    return port;
                }
            }
        }

        throw new InvalidOperationException("no free loopback port after 100 attempts");
    }

    public static string Address(int port) => "127.0.0.1:" + port.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
