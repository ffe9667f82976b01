using System.Net;
using System.Net.Sockets;

namespace Stcache.Server;

/// <summary>
/// Where the continuations of socket operations run (<c>--io-threads</c>). With <c>inline</c>, the runtime's socket
/// event threads (one epoll thread per core) run a completed receive's or send's continuation themselves, as Redis's
/// event loop does: a request read, executed and answered without a hand-off to the thread pool. With <c>pool</c>
/// (the runtime's default), every completion is queued to the thread pool first.
/// <para>The runtime reads its switch (<c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c>) once, when its socket
/// engine starts, at the process's first asynchronous socket operation; <see cref="Apply"/> therefore runs first
/// thing in <see cref="Program.Main"/>, and <see cref="ProbeAsync"/> checks afterwards which mode took effect.</para>
/// <para>The cost of inline: code that blocks on such a continuation stalls every socket served by that event thread.
/// What runs there (docs/PERFORMANCE.md, "I/O scheduling, session 8"): parsing, the cache's short lookup lock,
/// non-blocking writes to the Raft loop's queues, and awaits; the Raft loop and its fsyncs keep their own thread.</para>
/// </summary>
public static class IoScheduling
{
    public const string RuntimeSwitch = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Sets the runtime's switch for this process; call before any socket exists.</summary>
    public static void Apply(bool inline) => Environment.SetEnvironmentVariable(RuntimeSwitch, inline ? "1" : "0");

    /// <summary>
    /// Observes where a socket continuation runs: a receive is left pending on a loopback connection, one byte is
    /// sent to complete it, and the awaiting code notes whether it resumed on a thread-pool thread. Returns true
    /// when it did not (completions run inline on the socket engine's thread).
    /// </summary>
    public static async Task<bool> ProbeAsync(CancellationToken cancellationToken = default)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
        using var server = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
        return await ResumesInlineAsync(server, client, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<bool> ResumesInlineAsync(Socket server, Socket client, CancellationToken cancellationToken)
    {
        var buffer = new byte[1];
        var receive = server.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
        if (receive.IsCompleted)
        {
            throw new InvalidOperationException("the probe's receive completed before anything was sent");
        }

        // The continuation is registered before the byte is sent, so it runs where the runtime completes the
        // receive: on the socket engine's thread, or on a thread-pool thread it was queued to.
        var observed = ObserveAsync(receive);
        await client.SendAsync(new byte[] { 1 }, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        return await observed.ConfigureAwait(false);
    }

    private static async Task<bool> ObserveAsync(ValueTask<int> receive)
    {
        await receive.ConfigureAwait(false);
        return !Thread.CurrentThread.IsThreadPoolThread;
    }
}
