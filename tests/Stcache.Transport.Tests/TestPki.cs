using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Stcache.Transport.Tests;

/// <summary>A throwaway certificate authority and node certificates, written as PEM files into a temp directory.</summary>
internal sealed class TestPki : IDisposable
{
    private static readonly Oid s_serverAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid s_clientAuthentication = new("1.3.6.1.5.5.7.3.2");
    private readonly List<X509Certificate2> _owned = [];

    public TestPki()
    {
        Directory = Path.Combine(Path.GetTempPath(), "stcache-tls-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    /// <summary>A self-signed CA (ECDSA P-256) with its key; its certificate is written to <c>{name}.crt</c>.</summary>
    public TestCa NewCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));
        _owned.Add(certificate);
        string path = Write($"{name}.crt", certificate.ExportCertificatePem());
        return new TestCa(certificate, path);
    }

    /// <summary>
    /// A node certificate issued by <paramref name="ca"/>, for serverAuth and clientAuth unless
    /// <paramref name="usages"/> says otherwise, with the given subject alternative names.
    /// </summary>
    public TestNodeFiles Issue(TestCa ca, string name, IPAddress[]? addresses = null, string[]? dnsNames = null, Oid[]? usages = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var usageOids = new OidCollection();
        foreach (var oid in usages ?? [s_serverAuthentication, s_clientAuthentication])
        {
            usageOids.Add(oid);
        }

        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usageOids, false));
        var names = new SubjectAlternativeNameBuilder();
        foreach (var address in addresses ?? [IPAddress.Loopback])
        {
            names.AddIpAddress(address);
        }

        foreach (string dnsName in dnsNames ?? [])
        {
            names.AddDnsName(dnsName);
        }

        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca.Certificate, true, false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.Create(ca.Certificate, now.AddMinutes(-10), now.AddHours(12), serial);
        string certificatePath = Write($"{name}.crt", certificate.ExportCertificatePem());
        string keyPath = Write($"{name}.key", key.ExportPkcs8PrivateKeyPem());
        return new TestNodeFiles(certificatePath, keyPath, ca.CertificatePath);
    }

    public string Write(string fileName, string text)
    {
        string path = Path.Combine(Directory, fileName);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Loads a node's files as the server would, keeping the certificates for disposal.</summary>
    public void Configure(TransportOptions options, TestNodeFiles files)
    {
        var certificate = CertificateFiles.Load(files.CertificatePath, files.KeyPath);
        var roots = CertificateFiles.LoadCaCertificates(files.CaPath);
        _owned.Add(certificate);
        _owned.AddRange(roots);
        options.TlsCertificate = certificate;
        options.TlsCaCertificates = roots;
    }

    public void Dispose()
    {
        foreach (var certificate in _owned)
        {
            certificate.Dispose();
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort; the directory is under the temp path.
        }
    }
}

internal sealed record TestCa(X509Certificate2 Certificate, string CertificatePath);

/// <summary>The files a node is started with: its certificate, its key, and the CA it trusts.</summary>
internal sealed record TestNodeFiles(string CertificatePath, string KeyPath, string CaPath);
