using System.Net;
using System.Security.Cryptography.X509Certificates;
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

    /// <summary>
    /// This node's certificate with its private key (see <see cref="CertificateFiles"/>), or null for plaintext
    /// peer links. When set, every peer connection runs TLS 1.2 or 1.3 under the handshake, this certificate
    /// serves both as the listener's server certificate and the dialer's client certificate, and plaintext
    /// peers are refused (as a plaintext node refuses TLS peers). The transport does not dispose it.
    /// </summary>
    public X509Certificate2? TlsCertificate { get; set; }

    /// <summary>
    /// Certificates trusted as roots for peer certificates (a private CA), or null/empty to use the system
    /// trust store. With a CA, a peer's chain must end at one of these; the system store is not consulted.
    /// </summary>
    public X509Certificate2Collection? TlsCaCertificates { get; set; }

    /// <summary>
    /// With TLS, the listener requires dialers to present a certificate that chains to the trusted roots
    /// (mutual TLS). On by default; turning it off leaves only the cluster secret to authenticate dialers.
    /// </summary>
    public bool TlsClientCertificateRequired { get; set; } = true;

    /// <summary>True when <see cref="TlsCertificate"/> is set.</summary>
    public bool TlsEnabled => TlsCertificate is not null;

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

    /// <summary>A flush to a peer taking longer than this ends the connection (the peer stopped reading).</summary>
    public TimeSpan WriteTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>First reconnect delay; doubles per failure up to <see cref="ReconnectBackoffMax"/>, with jitter.</summary>
    public TimeSpan ReconnectBackoffMin { get; set; } = TimeSpan.FromMilliseconds(50);

    public TimeSpan ReconnectBackoffMax { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Dial every peer at once and redial after a failure even with nothing to send, rather than on the first
    /// message. A follower rarely writes to the other followers, yet when the leader crashes its pre-vote and vote
    /// must reach them at once: a dial and a handshake on a loaded machine can cost more than the election itself.
    /// </summary>
    public bool KeepConnected { get; set; } = true;

    /// <summary>
    /// How long a removed peer's connection stays open to deliver what was queued for it before the removal. The
    /// leader's last append to a member it removes carries the commit of that removal; without it the removed
    /// node never learns it is out. Zero drops the queue at once.
    /// </summary>
    public TimeSpan RemovedPeerDrain { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Serve each authenticated plaintext inbound connection on a thread of its own that blocks in the socket's
    /// receive, decodes and delivers (a 3-node cluster has two per node), instead of asynchronous receives whose
    /// continuations run on the runtime's socket or pool threads: the kernel wakes that thread straight from the
    /// peer's send, with no readiness notification and no hand-off in between. TLS connections stay asynchronous.
    /// </summary>
    public bool ReceiveThreads { get; set; } = true;
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

        ValidateTls(options, failures);

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

        if (options.WriteTimeout <= TimeSpan.Zero)
        {
            failures.Add("WriteTimeout must be positive.");
        }

        if (options.ReconnectBackoffMin <= TimeSpan.Zero || options.ReconnectBackoffMax < options.ReconnectBackoffMin)
        {
            failures.Add("ReconnectBackoffMin must be positive and at most ReconnectBackoffMax.");
        }

        if (options.RemovedPeerDrain < TimeSpan.Zero)
        {
            failures.Add("RemovedPeerDrain must not be negative.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateTls(TransportOptions options, List<string> failures)
    {
        var certificate = options.TlsCertificate;
        bool hasCa = options.TlsCaCertificates is { Count: > 0 };
        if (certificate is null)
        {
            if (hasCa)
            {
                failures.Add("TlsCaCertificates is set but TlsCertificate is not: peer TLS is half-configured (set --peer-tls-cert and --peer-tls-key too).");
            }

            return;
        }

        if (!certificate.HasPrivateKey)
        {
            failures.Add($"TlsCertificate '{certificate.Subject}' has no private key: load it with CertificateFiles.Load(certificate, key) or from a PFX that includes the key.");
            return;
        }

        if (!PeerTls.HasUsage(certificate, PeerTls.ServerAuthenticationOid))
        {
            failures.Add($"TlsCertificate '{certificate.Subject}' has an extended key usage without serverAuth; peers could not accept it from this listener.");
        }

        if (!PeerTls.HasUsage(certificate, PeerTls.ClientAuthenticationOid))
        {
            failures.Add($"TlsCertificate '{certificate.Subject}' has an extended key usage without clientAuth; peers could not accept it from this dialer.");
        }

        if (!hasCa)
        {
            return;
        }

        foreach (var ca in options.TlsCaCertificates!)
        {
            if (ca.HasPrivateKey)
            {
                failures.Add($"TlsCaCertificates holds '{ca.Subject}' with its private key; give only the CA certificate.");
            }
        }

        // A node whose own certificate does not chain to the CA it trusts is almost surely misconfigured
        // (wrong file or wrong CA), and its peers, configured alike, would refuse it. Say so at start.
        string? chainProblem = PeerTls.CheckChain(certificate, options.TlsCaCertificates!, PeerTls.ClientAuthenticationOid);
        if (chainProblem is not null)
        {
            failures.Add($"TlsCertificate '{certificate.Subject}' does not chain to TlsCaCertificates: {chainProblem}.");
        }
    }
}
