using System.Net;
using System.Text;
using Microsoft.Extensions.Options;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>Settings of a <see cref="PeerTransport"/>. Checked by <see cref="TransportOptionsValidator"/>.</summary>
public sealed class TransportOptions
{
    /// <summary>This node's id; never zero.</summary>
    public NodeId NodeId { get; set; }

    /// <summary>Names the cluster (1..255 UTF-8 bytes). Connections from another cluster are refused.</summary>
    public string ClusterId { get; set; } = string.Empty;

    /// <summary>Where to accept peer connections. Port 0 binds any free port (see <see cref="PeerTransport.ListenEndPoint"/>).</summary>
    public IPEndPoint ListenEndPoint { get; set; } = new(IPAddress.Loopback, 0);

    /// <summary>
    /// Shared secret (at least 16 bytes) that both ends of every connection must prove they know, or null to
    /// only check the cluster and node ids.
    /// </summary>
    public byte[]? ClusterSecret { get; set; }

    /// <summary>Messages queued per peer before new ones are dropped.</summary>
    public int PeerQueueCapacity { get; set; } = 4096;

    /// <summary>Largest frame body accepted or sent; bounds every allocation made for one frame.</summary>
    public int FrameBytesMax { get; set; } = 64 * 1024 * 1024;

    /// <summary>Soft bound on one coalesced messages frame; a single larger message still goes alone.</summary>
    public int BatchBytesTarget { get; set; } = 1024 * 1024;

    /// <summary>Size of each chunk snapshot data is streamed in.</summary>
    public int SnapshotChunkBytes { get; set; } = 1024 * 1024;

    /// <summary>Largest snapshot data accepted from a peer; the receiver reassembles it in memory.</summary>
    public int SnapshotBytesMax { get; set; } = 1024 * 1024 * 1024;

    /// <summary>Inbound connections served at once; more are closed on accept.</summary>
    public int InboundConnectionsMax { get; set; } = 256;

    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(3);

    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>First reconnect delay; doubles per failure up to <see cref="ReconnectBackoffMax"/>, with jitter.</summary>
    public TimeSpan ReconnectBackoffMin { get; set; } = TimeSpan.FromMilliseconds(50);

    public TimeSpan ReconnectBackoffMax { get; set; } = TimeSpan.FromSeconds(2);
}

/// <summary>Validates <see cref="TransportOptions"/>; use with <c>ValidateOnStart()</c> or call <see cref="ThrowIfInvalid"/>.</summary>
public sealed class TransportOptionsValidator : IValidateOptions<TransportOptions>
{
    public static void ThrowIfInvalid(TransportOptions options)
    {
        var result = new TransportOptionsValidator().Validate(null, options);
        if (result.Failed)
        {
            throw new OptionsValidationException(nameof(TransportOptions), typeof(TransportOptions), result.Failures);
        }
    }

    public ValidateOptionsResult Validate(string? name, TransportOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.NodeId.IsNone)
        {
            failures.Add("NodeId must not be zero.");
        }

        int clusterIdBytes = Encoding.UTF8.GetByteCount(options.ClusterId ?? string.Empty);
        if (clusterIdBytes is 0 or > Handshake.ClusterIdBytesMax)
        {
            failures.Add($"ClusterId must have 1..{Handshake.ClusterIdBytesMax} UTF-8 bytes.");
        }

        if (options.ListenEndPoint is null)
        {
            failures.Add("ListenEndPoint is required.");
        }

        if (options.ClusterSecret is { Length: < 16 })
        {
            failures.Add("ClusterSecret must have at least 16 bytes when set.");
        }

        if (options.PeerQueueCapacity is < 1 or > 1_000_000)
        {
            failures.Add("PeerQueueCapacity must be in 1..1000000.");
        }

        if (options.FrameBytesMax is < 64 * 1024 or > 1024 * 1024 * 1024)
        {
            failures.Add("FrameBytesMax must be in 64 KiB..1 GiB.");
        }

        if (options.BatchBytesTarget < 1 || options.BatchBytesTarget > options.FrameBytesMax)
        {
            failures.Add("BatchBytesTarget must be in 1..FrameBytesMax.");
        }

        if (options.SnapshotChunkBytes < 1 || options.SnapshotChunkBytes > options.FrameBytesMax)
        {
            failures.Add("SnapshotChunkBytes must be in 1..FrameBytesMax.");
        }

        if (options.SnapshotBytesMax < 0 || options.SnapshotBytesMax > Array.MaxLength)
        {
            failures.Add("SnapshotBytesMax must be in 0..Array.MaxLength.");
        }

        if (options.InboundConnectionsMax < 1)
        {
            failures.Add("InboundConnectionsMax must be positive.");
        }

        if (options.ConnectTimeout <= TimeSpan.Zero)
        {
            failures.Add("ConnectTimeout must be positive.");
        }

        if (options.HandshakeTimeout <= TimeSpan.Zero)
        {
            failures.Add("HandshakeTimeout must be positive.");
        }

        if (options.ReconnectBackoffMin <= TimeSpan.Zero || options.ReconnectBackoffMax < options.ReconnectBackoffMin)
        {
            failures.Add("ReconnectBackoffMin must be positive and at most ReconnectBackoffMax.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
