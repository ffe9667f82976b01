using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Stcache.Transport;

/// <summary>
/// TLS under the peer handshake. What is checked on the peer's certificate:
/// <list type="bullet">
/// <item>Protocol TLS 1.2 or 1.3 only, no renegotiation.</item>
/// <item>The chain must build to a root in <see cref="TransportOptions.TlsCaCertificates"/> (custom root trust;
/// the system store is ignored) or, without configured CAs, to the system trust store. Validity dates are
/// checked on every certificate in the chain; revocation is not (private CAs rarely publish CRLs).</item>
/// <item>Extended key usage: the listener's certificate must allow serverAuth and a dialer's clientAuth
/// (a certificate without the extension allows both).</item>
/// <item>The dialer checks the listener's name against the host of the peer address: a DNS name must be in
/// the certificate's subject alternative names (or common name). For a peer addressed by IP literal the name
/// check is skipped when CAs are configured, so any certificate issued by the cluster CA is accepted; without
/// configured CAs the IP must be in the certificate's IP subject alternative names.</item>
/// <item>The listener requires a client certificate when <see cref="TransportOptions.TlsClientCertificateRequired"/>
/// is set and checks its chain and usage but no name: which node a dialer is, is proven by the cluster-secret
/// handshake that runs inside the TLS session.</item>
/// </list>
/// </summary>
internal sealed class PeerTls
{
    public const string ServerAuthenticationOid = "1.3.6.1.5.5.7.3.1";
    public const string ClientAuthenticationOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>First byte of every TLS connection (a handshake record); a plaintext frame starts with the protocol version 1.</summary>
    public const byte HandshakeRecordType = 0x16;

    private const SslProtocols Protocols = SslProtocols.Tls12 | SslProtocols.Tls13;

    private readonly TransportOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly SslStreamCertificateContext _certificateContext;
    private readonly X509ChainPolicy? _serverChainPolicy;
    private readonly X509ChainPolicy? _clientChainPolicy;

    public PeerTls(TransportOptions options, TimeProvider timeProvider)
    {
        var certificate = options.TlsCertificate ?? throw new ArgumentException("TLS needs a certificate.", nameof(options));
        _options = options;
        _timeProvider = timeProvider;
        _certificateContext = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
        if (options.TlsCaCertificates is { Count: > 0 } roots)
        {
            _serverChainPolicy = NewChainPolicy(roots, ServerAuthenticationOid);
            _clientChainPolicy = NewChainPolicy(roots, ClientAuthenticationOid);
        }
    }

    private bool HasCustomRoots => _serverChainPolicy is not null;

    /// <summary>True unless the certificate has an extended key usage extension that lacks <paramref name="oid"/>.</summary>
    public static bool HasUsage(X509Certificate2 certificate, string oid)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509EnhancedKeyUsageExtension usage)
            {
                foreach (var allowed in usage.EnhancedKeyUsages)
                {
                    if (string.Equals(allowed.Value, oid, StringComparison.Ordinal))
                    {
                        return true;
                    }
                }

                return false;
            }
        }

        return true;
    }

    /// <summary>Builds <paramref name="certificate"/>'s chain against <paramref name="roots"/> only; null when it validates, else why not.</summary>
    public static string? CheckChain(X509Certificate2 certificate, X509Certificate2Collection roots, string usageOid)
    {
        using var chain = new X509Chain { ChainPolicy = NewChainPolicy(roots, usageOid) };
        return chain.Build(certificate) ? null : Describe(chain);
    }

    /// <summary>Runs the dialer's side of TLS over <paramref name="inner"/>, bounded by the handshake timeout.</summary>
    public async ValueTask<Stream> AuthenticateAsDialerAsync(Stream inner, string targetHost, CancellationToken cancellationToken)
    {
        bool nameCheckRelaxed = HasCustomRoots && IPAddress.TryParse(targetHost, out _);
        string? rejection = null;
        var sslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            EnabledSslProtocols = Protocols,
            AllowRenegotiation = false,
            ClientCertificateContext = _certificateContext,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            CertificateChainPolicy = _serverChainPolicy?.Clone(),
            RemoteCertificateValidationCallback = (_, _, chain, errors) =>
            {
                rejection = Check(chain, errors, certificateRequired: true, nameCheckRelaxed, targetHost);
                return rejection is null;
            },
        };
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            await ssl.AuthenticateAsClientAsync(sslOptions, linked.Token).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception exception)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw Translate(exception, rejection, "the listener's");
        }
    }

    /// <summary>Runs the listener's side of TLS over <paramref name="inner"/>, bounded by the handshake timeout.</summary>
    public async ValueTask<Stream> AuthenticateAsListenerAsync(Stream inner, CancellationToken cancellationToken)
    {
        bool required = _options.TlsClientCertificateRequired;
        string? rejection = null;
        var sslOptions = new SslServerAuthenticationOptions
        {
            EnabledSslProtocols = Protocols,
            AllowRenegotiation = false,
            ServerCertificateContext = _certificateContext,
            ClientCertificateRequired = required,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            CertificateChainPolicy = _clientChainPolicy?.Clone(),
            RemoteCertificateValidationCallback = (_, _, chain, errors) =>
            {
                // Client certificates are checked for chain and usage, never for a name.
                errors &= ~SslPolicyErrors.RemoteCertificateNameMismatch;
                rejection = Check(chain, errors, required, nameCheckRelaxed: true, targetHost: null);
                return rejection is null;
            },
        };
        var ssl = new SslStream(inner, leaveInnerStreamOpen: false);
        try
        {
            using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            await ssl.AuthenticateAsServerAsync(sslOptions, linked.Token).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception exception)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw Translate(exception, rejection, "the dialer's");
        }
    }

    private static X509ChainPolicy NewChainPolicy(X509Certificate2Collection roots, string usageOid)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
            VerificationFlags = X509VerificationFlags.NoFlag,
            DisableCertificateDownloads = true,
        };
        policy.CustomTrustStore.AddRange(roots);
        policy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid(usageOid));
        return policy;
    }

    private string? Check(X509Chain? chain, SslPolicyErrors errors, bool certificateRequired, bool nameCheckRelaxed, string? targetHost)
    {
        if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0)
        {
            return certificateRequired ? "no certificate presented" : null;
        }

        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            string trust = HasCustomRoots ? "the configured peer CA" : "the system trust store";
            return $"certificate chain does not validate against {trust}: {(chain is null ? "no chain" : Describe(chain))}";
        }

        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0 && !nameCheckRelaxed)
        {
            return $"certificate is not issued for '{targetHost}'";
        }

        return null;
    }

    private static string Describe(X509Chain chain)
    {
        var parts = new List<string>();
        foreach (var status in chain.ChainStatus)
        {
            parts.Add($"{status.Status} ({status.StatusInformation.Trim()})");
        }

        return parts.Count == 0 ? "unknown chain error" : string.Join("; ", parts);
    }

    private static Exception Translate(Exception exception, string? rejection, string whose)
    {
        if (rejection is not null)
        {
            return new HandshakeException($"TLS: {whose} certificate was refused: {rejection}");
        }

        return exception switch
        {
            AuthenticationException => new HandshakeException($"TLS handshake failed: {exception.Message}"),
            IOException => new HandshakeException($"TLS handshake failed: {exception.Message}"),
            _ => exception,
        };
    }
}
