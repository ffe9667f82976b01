using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Stcache.Integration.Tests;
using Xunit.Abstractions;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>
/// RESP over TLS: one node given <c>--tls-cert</c>/<c>--tls-key</c> (the HTTPS certificate, from a private CA) and
/// <c>--auth-token</c> serves the same certificate on its RESP port, and AUTH works over it, for a raw SslStream
/// client and for Debian's <c>redis-cli --tls --cacert</c>.
/// </summary>
public sealed class RespTlsTests(ITestOutputHelper output) : RespClusterTest
{
    private const string Token = "resp-tls-token-0123456789abcdef";

    [Fact]
    public async Task RespServesTheHttpsCertificateAndTakesTheTokenOverTls()
    {
        var (ca, caPath) = WriteCertificateAuthority();
        var (cert, key) = WriteNodeCertificate(ca, "tls-node");
        var node = StartSingle("tls", $"--tls-cert={cert}", $"--tls-key={key}", $"--auth-token={Token}");
        int port = RespPorts[node];

        // Up when an authenticated TLS client sees this node lead.
        await Api.WaitUntilAsync("the TLS node leads", async () =>
        {
            try
            {
                await using var probe = await RawClient.ConnectTlsAsync(port, ca);
                return await probe.CommandAsync("AUTH", Token) == "+OK" && (await probe.CommandAsync("ROLE")).StartsWith("*3\r\n$6\r\nmaster", StringComparison.Ordinal);
            }
            catch (SocketException)
            {
                return false; // not listening yet
            }
        }, Wait, node);

        // The certificate on the RESP port is the one on the HTTPS port.
        Assert.Equal(await PeerCertificateAsync(node.HttpPort, ca), await PeerCertificateAsync(port, ca));

        await using (var client = await RawClient.ConnectTlsAsync(port, ca))
        {
            Assert.Equal("-NOAUTH Authentication required.", await client.CommandAsync("GET", "k"));
            Assert.StartsWith("-WRONGPASS", await client.CommandAsync("AUTH", "not-the-token"), StringComparison.Ordinal);
            Assert.Equal("+OK", await client.CommandAsync("AUTH", Token));
            Assert.Equal("+OK", await client.CommandAsync("SET", "tls:k", "over tls"));
            Assert.Equal("$8\r\nover tls\r\n", await client.CommandAsync("GET", "tls:k"));
        }

        await using (var hello = await RawClient.ConnectTlsAsync(port, ca))
        {
            Assert.StartsWith("%", await hello.CommandAsync("HELLO", "3", "AUTH", "default", Token), StringComparison.Ordinal);
            Assert.Equal("$8\r\nover tls\r\n", await hello.CommandAsync("GET", "tls:k"));
        }

        // Plain text on the TLS port gets no RESP answer: the handshake fails and the connection is closed.
        await using (var plain = await RawClient.ConnectAsync(port))
        {
            await plain.SendAsync(RawClient.Encode("PING"));
            Assert.True(await plain.IsClosedAsync(TimeSpan.FromSeconds(15)));
        }

        string p = port.ToString(CultureInfo.InvariantCulture);
        string[] tls = ["--tls", "--cacert", caPath, "-h", "127.0.0.1", "-p", p];
        var (code, text) = await RunAsync("redis-cli", [.. tls, "GET", "tls:k"]);
        output.WriteLine(text);
        Assert.Equal((0, "NOAUTH Authentication required."), (code, text.Replace("(error) ", string.Empty, StringComparison.Ordinal).Trim()));
        (code, text) = await RunAsync("redis-cli", [.. tls, "--no-auth-warning", "-a", Token, "SET", "tls:cli", "from redis-cli"]);
        Assert.Equal((0, "OK\n"), (code, text));
        (code, text) = await RunAsync("redis-cli", [.. tls, "--no-auth-warning", "-a", Token, "GET", "tls:cli"]);
        Assert.Equal((0, "from redis-cli\n"), (code, text));

        // Without the CA, redis-cli refuses the certificate.
        (code, text) = await RunAsync("redis-cli", ["--tls", "-h", "127.0.0.1", "-p", p, "--no-auth-warning", "-a", Token, "PING"]);
        output.WriteLine(text);
        Assert.DoesNotContain("PONG", text, StringComparison.Ordinal);
    }

    /// <summary>The DER bytes (hex) of the certificate a TLS server on the port presents, checked against the CA.</summary>
    private static async Task<string> PeerCertificateAsync(int port, X509Certificate2 ca)
    {
        var trust = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        trust.CustomTrustStore.Add(ca);
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "127.0.0.1",
            CertificateChainPolicy = trust,
        });
        return Convert.ToHexString(tls.RemoteCertificate!.GetRawCertData());
    }

    private (X509Certificate2 Ca, string Path) WriteCertificateAuthority()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=stcache RESP test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        string path = Path.Combine(WorkDirectory.Path, "resp-ca.pem");
        File.WriteAllText(path, ca.ExportCertificatePem());
        return (ca, path);
    }

    private (string Cert, string Key) WriteNodeCertificate(X509Certificate2 ca, string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        byte[] serial = RandomNumberGenerator.GetBytes(8);
        serial[0] &= 0x7F;
        using var certificate = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(12), serial);
        string certPath = Path.Combine(WorkDirectory.Path, $"{name}.pem");
        string keyPath = Path.Combine(WorkDirectory.Path, $"{name}.key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }
}
