using System.Net;
using System.Net.Sockets;

namespace Stcache.Server;

/// <summary>
/// A listener that cannot take its address; <see cref="Program.Main"/> prints the message alone and exits 1.
/// The message names the flag and the address: <c>--raft 127.0.0.1:7391: address already in use</c>.
/// </summary>
public sealed class ListenerException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Binds every listening socket before anything else starts. A node that cannot take one of its addresses
/// refuses to start with one line naming the flag, before it creates or touches its data directory. The bound
/// socket is then handed to its server (the peer transport, Kestrel, the RESP listener), so no other process can
/// take the port in between.
/// </summary>
internal static class Listeners
{
    public const int Backlog = 512;

    /// <summary>
    /// Binds and listens on <paramref name="address"/> (<c>host:port</c>; an any-host address listens on every
    /// interface, IPv6 dual-mode too with <paramref name="dualModeWhenAny"/> where the machine has IPv6, as
    /// Kestrel's <c>ListenAnyIP</c> does) or throws a <see cref="ListenerException"/> naming
    /// <paramref name="flag"/> (without dashes, as the usage text spells it).
    /// </summary>
    public static Socket Bind(string flag, string address, bool dualModeWhenAny = false)
    {
        string named = $"--{flag} {address}";
        IPEndPoint endPoint;
        try
        {
            endPoint = Program.ResolveEndPoint(address);
        }
        catch (Exception e) when (e is SocketException or ArgumentException or InvalidOperationException)
        {
            throw new ListenerException($"{named}: cannot resolve the host ({e.Message})", e);
        }

        bool dualMode = dualModeWhenAny && CommandLine.IsAnyHost(address) && Socket.OSSupportsIPv6;
        if (dualMode)
        {
            endPoint = new IPEndPoint(IPAddress.IPv6Any, endPoint.Port);
        }

        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (dualMode)
            {
                socket.DualMode = true;
            }

            socket.Bind(endPoint);
            socket.Listen(Backlog);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new ListenerException($"{named}: {Reason(e)}", e);
        }
    }

    private static string Reason(SocketException e) => e.SocketErrorCode switch
    {
        SocketError.AddressAlreadyInUse => "address already in use (another process is listening there)",
        SocketError.AddressNotAvailable => "address not available (no interface of this machine has it)",
        SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
        _ => e.Message,
    };
}
