using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Stcache.Transport;

/// <summary>
/// Loads peer TLS certificates from files for <see cref="TransportOptions.TlsCertificate"/> and
/// <see cref="TransportOptions.TlsCaCertificates"/> (the server's <c>--peer-tls-cert</c>, <c>--peer-tls-key</c>
/// and <c>--peer-tls-ca</c> flags). Every failure is a <see cref="CertificateFileException"/> whose message names
/// the file and says what is wrong with it.
/// </summary>
public static class CertificateFiles
{
    // PEM files are small; a larger file is almost surely the wrong path (a log, a binary).
    private const long PemFileBytesMax = 1024 * 1024;
    private const long PfxFileBytesMax = 16 * 1024 * 1024;

    /// <summary>
    /// Loads a certificate and its private key from PEM files. The certificate file's first CERTIFICATE block is
    /// the node certificate; the key file holds an unencrypted PKCS#8 (<c>PRIVATE KEY</c>), PKCS#1
    /// (<c>RSA PRIVATE KEY</c>) or SEC1 (<c>EC PRIVATE KEY</c>) key that must match it. Both may be one file.
    /// </summary>
    public static X509Certificate2 Load(string certificatePemPath, string keyPemPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(certificatePemPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyPemPath);
        string certificatePem = ReadPem(certificatePemPath, "certificate");
        string keyPem = ReadPem(keyPemPath, "private key");
        if (!TryFindPem(certificatePem, out _, "CERTIFICATE"))
        {
            throw new CertificateFileException(certificatePemPath, "contains no PEM 'CERTIFICATE' block");
        }

        if (TryFindPem(keyPem, out _, "ENCRYPTED PRIVATE KEY"))
        {
            throw new CertificateFileException(
                keyPemPath, "holds an encrypted private key; decrypt it (openssl pkey -in key.pem -out plain.pem) and protect the file with permissions");
        }

        if (!TryFindPem(keyPem, out _, "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"))
        {
            throw new CertificateFileException(
                keyPemPath, "contains no PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block");
        }

        X509Certificate2 ephemeral;
        try
        {
            ephemeral = X509Certificate2.CreateFromPem(certificatePem, keyPem);
        }
        catch (Exception exception) when (exception is CryptographicException or ArgumentException)
        {
            // A key of another certificate is an ArgumentException; a damaged block is a CryptographicException.
            throw new CertificateFileException(
                certificatePemPath, $"cannot be loaded with the key in '{keyPemPath}': {exception.Message}", exception);
        }

        using (ephemeral)
        {
            return Persistable(ephemeral, certificatePemPath);
        }
    }

    /// <summary>Loads a certificate with its private key from a PKCS#12 (PFX) file.</summary>
    public static X509Certificate2 LoadPfx(string path, string? password)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        byte[] bytes = ReadBytes(path, "PFX", PfxFileBytesMax);
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12(bytes, password, X509KeyStorageFlags.EphemeralKeySet);
        }
        catch (CryptographicException exception)
        {
            throw new CertificateFileException(path, $"is not a PKCS#12 file this password opens: {exception.Message}", exception);
        }

        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new CertificateFileException(path, "holds no private key for its certificate");
        }

        return certificate;
    }

    /// <summary>Loads every CERTIFICATE block of a PEM file (one CA or a bundle) as certificates to trust for peers.</summary>
    public static X509Certificate2Collection LoadCaCertificates(string pemPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pemPath);
        string pem = ReadPem(pemPath, "CA certificate");
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(pem);
        }
        catch (CryptographicException exception)
        {
            throw new CertificateFileException(pemPath, $"holds a certificate that cannot be parsed: {exception.Message}", exception);
        }

        if (collection.Count == 0)
        {
            throw new CertificateFileException(pemPath, "contains no PEM 'CERTIFICATE' block");
        }

        return collection;
    }

    /// <summary>
    /// Checks a combination of the <c>--peer-tls-*</c> flag values before anything is loaded; returns the
    /// problems (empty when the combination is complete: all unset, or cert and key set, CA optional).
    /// </summary>
    public static IReadOnlyList<string> CheckFlags(string? certificatePath, string? keyPath, string? caPath)
    {
        bool hasCertificate = !string.IsNullOrWhiteSpace(certificatePath);
        bool hasKey = !string.IsNullOrWhiteSpace(keyPath);
        bool hasCa = !string.IsNullOrWhiteSpace(caPath);
        var problems = new List<string>();
        if (hasCertificate && !hasKey && !IsPfx(certificatePath!))
        {
            problems.Add("--peer-tls-cert is set without --peer-tls-key: peer TLS needs the certificate's private key.");
        }

        if (hasKey && !hasCertificate)
        {
            problems.Add("--peer-tls-key is set without --peer-tls-cert.");
        }

        if (hasCa && !hasCertificate)
        {
            problems.Add("--peer-tls-ca is set without --peer-tls-cert and --peer-tls-key: peer TLS is half-configured.");
        }

        return problems;
    }

    private static bool IsPfx(string path) =>
        path.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".p12", StringComparison.OrdinalIgnoreCase);

    private static bool TryFindPem(string text, out PemFields fields, params string[] labels)
    {
        ReadOnlySpan<char> rest = text;
        while (PemEncoding.TryFind(rest, out fields))
        {
            var label = rest[fields.Label];
            foreach (string wanted in labels)
            {
                if (label.SequenceEqual(wanted))
                {
                    return true;
                }
            }

            rest = rest[fields.Location.End..];
        }

        fields = default;
        return false;
    }

    private static string ReadPem(string path, string what)
    {
        byte[] bytes = ReadBytes(path, what, PemFileBytesMax);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }

    private static byte[] ReadBytes(string path, string what, long bytesMax)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new CertificateFileException(path, Directory.Exists(path) ? $"is a directory, not a {what} file" : "does not exist");
            }

            if (info.Length > bytesMax)
            {
                throw new CertificateFileException(path, $"is {info.Length} bytes, too large for a {what} file");
            }

            return File.ReadAllBytes(path);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new CertificateFileException(path, $"cannot be read as a {what} file: {exception.Message}", exception);
        }
    }

    /// <summary>
    /// A certificate from <see cref="X509Certificate2.CreateFromPem(ReadOnlySpan{char}, ReadOnlySpan{char})"/>
    /// has an ephemeral key, which Windows' TLS stack cannot use; round-tripping through PKCS#12 works everywhere.
    /// </summary>
    private static X509Certificate2 Persistable(X509Certificate2 certificate, string path)
    {
        try
        {
            byte[] pkcs12 = certificate.Export(X509ContentType.Pkcs12);
            return X509CertificateLoader.LoadPkcs12(pkcs12, password: null, X509KeyStorageFlags.Exportable);
        }
        catch (CryptographicException exception)
        {
            throw new CertificateFileException(path, $"cannot be prepared for TLS: {exception.Message}", exception);
        }
    }
}

/// <summary>A certificate or key file is missing, unreadable, or does not hold what it should.</summary>
public sealed class CertificateFileException : Exception
{
    public CertificateFileException(string path, string problem, Exception? innerException = null)
        : base($"Peer TLS file '{path}' {problem}.", innerException)
    {
        Path = path;
    }

    /// <summary>The file at fault.</summary>
    public string Path { get; }
}
