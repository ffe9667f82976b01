using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stcache.Raft;

namespace Stcache.Transport.Tests;

public sealed class PeerTlsTests : IDisposable
{
    private const int ConnectFailedEvent = 3002;
    private const int InboundRefusedEvent = 3005;
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task ExchangesMessagesOverMutualTls()
    {
        var ca = _pki.NewCa("cluster-ca");
        await using var a = await StartTlsAsync(1, _pki.Issue(ca, "node1"));
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"));
        a.Transport.SetPeer(new NodeId(2), b.Address);
        b.Transport.SetPeer(new NodeId(1), a.Address);

        var heartbeat = TestMessages.Heartbeat(1, 2, round: 42);
        a.Transport.Send(heartbeat);
        TestMessages.AssertSame(heartbeat, await b.ReceiveAsync());

        var snapshot = TestMessages.Snapshot(2, 1, RandomNumberGenerator.GetBytes(100_000));
        b.Transport.Send(snapshot);
        TestMessages.AssertSame(snapshot, await a.ReceiveAsync());

        Assert.True(a.Logger.Has(LogLevel.Information, 3016));
        Assert.Equal(0, a.Transport.InboundConnectionsRefused);
        Assert.Equal(0, b.Transport.InboundConnectionsRefused);
    }

    [Fact]
    public async Task TlsRunsUnderTheClusterSecretHandshake()
    {
        var ca = _pki.NewCa("cluster-ca");
        byte[] secret = RandomNumberGenerator.GetBytes(32);
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"), o => o.ClusterSecret = secret);
        await using var a = await StartTlsAsync(1, _pki.Issue(ca, "node1"), o => o.ClusterSecret = secret);
        await using var wrongSecret = await StartTlsAsync(3, _pki.Issue(ca, "node3"), o => o.ClusterSecret = RandomNumberGenerator.GetBytes(32));

        // A valid certificate does not replace the secret: the HMAC handshake inside TLS still refuses.
        wrongSecret.Transport.SetPeer(new NodeId(2), b.Address);
        wrongSecret.Transport.Send(TestMessages.Heartbeat(3, 2));
        // The dialer refuses the listener's proof first and hangs up, so the listener sees a closed handshake.
        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the listener refuses the wrong secret");
        await Wait.UntilAsync(() => wrongSecret.Transport.ConnectionFailures >= 1, "the dialer with the wrong secret fails");
        Assert.False(wrongSecret.Transport.IsConnected(new NodeId(2)));

        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, round: 7));
        Assert.Equal(7UL, (await b.ReceiveAsync()).Round);
    }

    [Fact]
    public async Task RefusesDialerWithCertificateFromAnotherCa()
    {
        var ca = _pki.NewCa("cluster-ca");
        var rogueCa = _pki.NewCa("rogue-ca");
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"));

        // The rogue dialer trusts the cluster CA, so only the listener's check can stop it.
        await using var rogue = await StartTlsAsync(3, RogueFiles(rogueCa, ca));
        rogue.Transport.SetPeer(new NodeId(2), b.Address);
        rogue.Transport.Send(TestMessages.Heartbeat(3, 2));

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the listener refuses the rogue dialer");
        await WaitForLogAsync(b, r => r.Level == LogLevel.Warning && r.EventId.Id == InboundRefusedEvent
            && r.Text.Contains("certificate chain does not validate against the configured peer CA", StringComparison.Ordinal));
        await Wait.UntilAsync(() => rogue.Transport.ConnectionFailures >= 1, "the rogue dialer fails to connect");

        await AssertListenerStillServesAsync(b, await StartTlsAsync(1, _pki.Issue(ca, "node1")));
    }

    [Fact]
    public async Task DialerRefusesListenerWithCertificateFromAnotherCa()
    {
        var ca = _pki.NewCa("cluster-ca");
        var rogueCa = _pki.NewCa("rogue-ca");

        // The rogue listener trusts the cluster CA, so only the dialer's check can stop it.
        await using var rogue = await StartTlsAsync(2, RogueFiles(rogueCa, ca));
        await using var a = await StartTlsAsync(1, _pki.Issue(ca, "node1"));
        a.Transport.SetPeer(new NodeId(2), rogue.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2));

        await Wait.UntilAsync(() => a.Transport.ConnectionFailures >= 1, "the dialer refuses the rogue listener");
        await WaitForLogAsync(a, r => r.Level == LogLevel.Warning && r.EventId.Id == ConnectFailedEvent
            && r.Text.Contains("certificate chain does not validate against the configured peer CA", StringComparison.Ordinal));
        Assert.False(a.Transport.IsConnected(new NodeId(2)));
        Assert.Equal(0, rogue.Transport.MessagesReceived);
    }

    [Fact]
    public async Task TlsListenerRefusesPlaintextDialerAndKeepsServing()
    {
        var ca = _pki.NewCa("cluster-ca");
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"));
        await using var plain = await Node.StartAsync(3);
        plain.Transport.SetPeer(new NodeId(2), b.Address);
        plain.Transport.Send(TestMessages.Heartbeat(3, 2));

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the TLS listener refuses plaintext");
        await WaitForLogAsync(b, r => r.Level == LogLevel.Warning && r.EventId.Id == InboundRefusedEvent
            && r.Text.Contains("plaintext connection refused", StringComparison.Ordinal));
        await Wait.UntilAsync(() => plain.Transport.ConnectionFailures >= 1, "the plaintext dialer fails to connect");
        await WaitForLogAsync(plain, r => r.Level == LogLevel.Warning && r.EventId.Id == ConnectFailedEvent);

        await AssertListenerStillServesAsync(b, await StartTlsAsync(1, _pki.Issue(ca, "node1")));
    }

    [Fact]
    public async Task PlaintextListenerRefusesTlsDialerAndKeepsServing()
    {
        var ca = _pki.NewCa("cluster-ca");
        await using var b = await Node.StartAsync(2);
        await using var tls = await StartTlsAsync(3, _pki.Issue(ca, "node3"));
        tls.Transport.SetPeer(new NodeId(2), b.Address);
        tls.Transport.Send(TestMessages.Heartbeat(3, 2));

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the plaintext listener refuses TLS");
        await WaitForLogAsync(b, r => r.Level == LogLevel.Warning && r.EventId.Id == InboundRefusedEvent
            && r.Text.Contains("TLS connection refused", StringComparison.Ordinal));
        await Wait.UntilAsync(() => tls.Transport.ConnectionFailures >= 1, "the TLS dialer fails to connect");
        await WaitForLogAsync(tls, r => r.Level == LogLevel.Warning && r.EventId.Id == ConnectFailedEvent);

        await AssertListenerStillServesAsync(b, await Node.StartAsync(1));
    }

    [Fact]
    public async Task ListenerRequiresAClientCertificate()
    {
        var ca = _pki.NewCa("cluster-ca");
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"));
        using var roots = CertificateFiles.LoadCaCertificates(ca.CertificatePath).DisposeAllOnDispose();

        // A TLS client that trusts the CA but presents no certificate.
        using var client = new TcpClient();
        await client.ConnectAsync(b.Transport.ListenEndPoint!);
        await using var ssl = new SslStream(client.GetStream());
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust };
        policy.CustomTrustStore.AddRange(roots.Collection);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "127.0.0.1",
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateChainPolicy = policy,
        };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            // With TLS 1.3 the client finishes before the server judges its (missing) certificate; the read fails.
            await ssl.AuthenticateAsClientAsync(options, timeout.Token);
            int read = await ssl.ReadAsync(new byte[1], timeout.Token);
            Assert.Equal(0, read);
        }
        catch (Exception exception) when (exception is AuthenticationException or IOException)
        {
            // Refused during the handshake: also fine.
        }

        await Wait.UntilAsync(() => b.Transport.InboundConnectionsRefused >= 1, "the listener refuses a dialer without a certificate");
        await WaitForLogAsync(b, r => r.EventId.Id == InboundRefusedEvent && r.Text.Contains("no certificate presented", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NameCheckIsRelaxedOnlyForPeersAddressedByIp()
    {
        var ca = _pki.NewCa("cluster-ca");

        // Issued for neither 127.0.0.1 nor localhost.
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2", addresses: [], dnsNames: ["node2.example"]));
        await using var byIp = await StartTlsAsync(1, _pki.Issue(ca, "node1"));
        await using var byName = await StartTlsAsync(3, _pki.Issue(ca, "node3"));

        byName.Transport.SetPeer(new NodeId(2), $"localhost:{b.Transport.ListenEndPoint!.Port}");
        byName.Transport.Send(TestMessages.Heartbeat(3, 2));
        await Wait.UntilAsync(() => byName.Transport.ConnectionFailures >= 1, "a peer addressed by name must match the certificate");
        await WaitForLogAsync(byName, r => r.EventId.Id == ConnectFailedEvent
            && r.Text.Contains("certificate is not issued for 'localhost'", StringComparison.Ordinal));

        // Addressed by IP, a certificate from the cluster CA suffices.
        byIp.Transport.SetPeer(new NodeId(2), b.Address);
        byIp.Transport.Send(TestMessages.Heartbeat(1, 2, round: 5));
        var received = await b.ReceiveAsync();
        Assert.Equal(new NodeId(1), received.From);
    }

    [Fact]
    public async Task PfxCertificateWorks()
    {
        var ca = _pki.NewCa("cluster-ca");
        var files = _pki.Issue(ca, "node1");
        using (var pem = CertificateFiles.Load(files.CertificatePath, files.KeyPath))
        {
            File.WriteAllBytes(Path.Combine(_pki.Directory, "node1.pfx"), pem.Export(X509ContentType.Pkcs12, "pass"));
        }

        using var certificate = CertificateFiles.LoadPfx(Path.Combine(_pki.Directory, "node1.pfx"), "pass");
        using var roots = CertificateFiles.LoadCaCertificates(ca.CertificatePath).DisposeAllOnDispose();
        await using var a = await Node.StartAsync(1, o =>
        {
            o.TlsCertificate = certificate;
            o.TlsCaCertificates = roots.Collection;
        });
        await using var b = await StartTlsAsync(2, _pki.Issue(ca, "node2"));
        a.Transport.SetPeer(new NodeId(2), b.Address);
        a.Transport.Send(TestMessages.Heartbeat(1, 2, round: 9));
        Assert.Equal(9UL, (await b.ReceiveAsync()).Round);

        var wrongPassword = Assert.Throws<CertificateFileException>(() => CertificateFiles.LoadPfx(Path.Combine(_pki.Directory, "node1.pfx"), "wrong"));
        Assert.Contains("node1.pfx", wrongPassword.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PemLoadingErrorsNameTheFileAndTheProblem()
    {
        var ca = _pki.NewCa("cluster-ca");
        var node1 = _pki.Issue(ca, "node1");
        var node2 = _pki.Issue(ca, "node2");
        string missing = Path.Combine(_pki.Directory, "missing.crt");
        string empty = _pki.Write("empty.pem", "not a pem file\n");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string encrypted = _pki.Write("encrypted.key", key.ExportEncryptedPkcs8PrivateKeyPem(
            "pass", new PbeParameters(PbeEncryptionAlgorithm.Aes128Cbc, HashAlgorithmName.SHA256, 1000)));

        AssertProblem(() => CertificateFiles.Load(missing, node1.KeyPath), missing, "does not exist");
        AssertProblem(() => CertificateFiles.Load(_pki.Directory, node1.KeyPath), _pki.Directory, "is a directory");
        AssertProblem(() => CertificateFiles.Load(node1.KeyPath, node1.KeyPath), node1.KeyPath, "contains no PEM 'CERTIFICATE' block");
        AssertProblem(() => CertificateFiles.Load(node1.CertificatePath, node1.CertificatePath), node1.CertificatePath, "contains no PEM 'PRIVATE KEY'");
        AssertProblem(() => CertificateFiles.Load(node1.CertificatePath, encrypted), encrypted, "encrypted private key");
        AssertProblem(() => CertificateFiles.Load(node1.CertificatePath, node2.KeyPath), node1.CertificatePath, node2.KeyPath);
        AssertProblem(() => CertificateFiles.LoadCaCertificates(empty), empty, "contains no PEM 'CERTIFICATE' block");
        AssertProblem(() => CertificateFiles.LoadPfx(empty, null), empty, "is not a PKCS#12 file");

        // One file holding both the certificate and the key also works.
        string combined = _pki.Write("node1.pem", File.ReadAllText(node1.CertificatePath) + "\n" + File.ReadAllText(node1.KeyPath));
        using var certificate = CertificateFiles.Load(combined, combined);
        Assert.True(certificate.HasPrivateKey);
    }

    [Fact]
    public void FlagCombinationsAreChecked()
    {
        Assert.Empty(CertificateFiles.CheckFlags(null, null, null));
        Assert.Empty(CertificateFiles.CheckFlags("n.crt", "n.key", null));
        Assert.Empty(CertificateFiles.CheckFlags("n.crt", "n.key", "ca.crt"));
        Assert.Empty(CertificateFiles.CheckFlags("n.pfx", null, "ca.crt"));
        Assert.Contains("without --peer-tls-key", Assert.Single(CertificateFiles.CheckFlags("n.crt", null, null)), StringComparison.Ordinal);
        Assert.Contains("without --peer-tls-cert", Assert.Single(CertificateFiles.CheckFlags(null, "n.key", null)), StringComparison.Ordinal);
        Assert.Contains("half-configured", Assert.Single(CertificateFiles.CheckFlags(null, null, "ca.crt")), StringComparison.Ordinal);
    }

    [Fact]
    public void ValidationRejectsHalfConfiguredTls()
    {
        var ca = _pki.NewCa("cluster-ca");
        var otherCa = _pki.NewCa("other-ca");
        var node = _pki.Issue(ca, "node1");
        using var roots = CertificateFiles.LoadCaCertificates(ca.CertificatePath).DisposeAllOnDispose();
        using var otherRoots = CertificateFiles.LoadCaCertificates(otherCa.CertificatePath).DisposeAllOnDispose();
        using var withKey = CertificateFiles.Load(node.CertificatePath, node.KeyPath);
        using var withoutKey = X509CertificateLoader.LoadCertificateFromFile(node.CertificatePath);
        var serverOnly = _pki.Issue(ca, "server-only", usages: [new Oid("1.3.6.1.5.5.7.3.1")]);
        using var serverOnlyCertificate = CertificateFiles.Load(serverOnly.CertificatePath, serverOnly.KeyPath);

        Assert.Empty(Failures(o => { o.TlsCertificate = withKey; o.TlsCaCertificates = roots.Collection; }));
        Assert.Empty(Failures(o => o.TlsCertificate = withKey));
        Assert.Contains("has no private key", Assert.Single(Failures(o => o.TlsCertificate = withoutKey)), StringComparison.Ordinal);
        Assert.Contains("half-configured", Assert.Single(Failures(o => o.TlsCaCertificates = roots.Collection)), StringComparison.Ordinal);
        Assert.Contains("does not chain to TlsCaCertificates", Assert.Single(Failures(o =>
        {
            o.TlsCertificate = withKey;
            o.TlsCaCertificates = otherRoots.Collection;
        })), StringComparison.Ordinal);
        Assert.Contains(Failures(o => o.TlsCertificate = serverOnlyCertificate), f => f.Contains("without clientAuth", StringComparison.Ordinal));

        var exception = Assert.Throws<OptionsValidationException>(() => new PeerTransport(
            Options(o => o.TlsCertificate = withoutKey), _ => { }, new ListLogger<PeerTransport>()));
        Assert.Contains("has no private key", exception.Message, StringComparison.Ordinal);
    }

    private static async Task AssertListenerStillServesAsync(Node listener, Node dialer)
    {
        await using (dialer)
        {
            ulong from = dialer.Transport.NodeId.Value;
            ulong to = listener.Transport.NodeId.Value;
            dialer.Transport.SetPeer(listener.Transport.NodeId, listener.Address);
            dialer.Transport.Send(TestMessages.Heartbeat(from, to, round: 99));
            var received = await listener.ReceiveAsync();
            Assert.Equal(dialer.Transport.NodeId, received.From);
            Assert.Equal(99UL, received.Round);
        }
    }

    /// <summary>Counters move before the matching log record is written, so wait for the record too.</summary>
    private static Task WaitForLogAsync(Node node, Func<(LogLevel Level, EventId EventId, string Text), bool> match) =>
        Wait.UntilAsync(() => node.Logger.Records.Any(match), "the expected log record is written");

    private static void AssertProblem(Action load, string path, string problem)
    {
        var exception = Assert.Throws<CertificateFileException>(load);
        Assert.Equal(path, exception.Path);
        Assert.Contains(path, exception.Message, StringComparison.Ordinal);
        Assert.Contains(problem, exception.Message, StringComparison.Ordinal);
    }

    private static TransportOptions Options(Action<TransportOptions> configure)
    {
        var options = new TransportOptions { NodeId = new NodeId(1), ClusterId = "test-cluster" };
        configure(options);
        return options;
    }

    private static List<string> Failures(Action<TransportOptions> configure)
    {
        var result = new TransportOptionsValidator().Validate(null, Options(configure));
        return result.Failed ? result.Failures.ToList() : [];
    }

    private Task<Node> StartTlsAsync(ulong id, TestNodeFiles files, Action<TransportOptions>? configure = null) =>
        Node.StartAsync(id, o =>
        {
            _pki.Configure(o, files);
            configure?.Invoke(o);
        });

    /// <summary>A node certificate from <paramref name="rogueCa"/> that trusts both CAs, so it accepts the cluster's nodes.</summary>
    private TestNodeFiles RogueFiles(TestCa rogueCa, TestCa clusterCa)
    {
        string bundle = _pki.Write("rogue-bundle.crt", File.ReadAllText(rogueCa.CertificatePath) + "\n" + File.ReadAllText(clusterCa.CertificatePath));
        return _pki.Issue(rogueCa, "rogue") with { CaPath = bundle };
    }
}

internal static class CertificateCollectionExtensions
{
    public static DisposableCollection DisposeAllOnDispose(this X509Certificate2Collection collection) => new(collection);
}

internal sealed class DisposableCollection : IDisposable
{
    public DisposableCollection(X509Certificate2Collection collection)
    {
        Collection = collection;
    }

    public X509Certificate2Collection Collection { get; }

    public void Dispose()
    {
        foreach (var certificate in Collection)
        {
            certificate.Dispose();
        }
    }
}
