using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Stcache.Transport;

namespace Stcache.Server;

/// <summary>Client authentication, HTTPS and peer TLS wiring for stcached (docs/SECURITY.md).</summary>
internal static class Security
{
    /// <summary>Paths served without a token, so load balancers and orchestrators can probe a node.</summary>
    private static readonly string[] s_openPaths = ["/healthz", "/readyz", .. Dashboard.StaticPaths];

    public static X509Certificate2? LoadApiCertificate(ServerOptions options) =>
        options.TlsCert is null ? null : LoadCertificate(options.TlsCert, options.TlsKey);

    public static void ConfigurePeerTls(TransportOptions transport, ServerOptions options)
    {
        if (options.PeerTlsCert is null)
        {
            return;
        }

        transport.TlsCertificate = LoadCertificate(options.PeerTlsCert, options.PeerTlsKey);
        if (options.PeerTlsCa is not null)
        {
            transport.TlsCaCertificates = CertificateFiles.LoadCaCertificates(options.PeerTlsCa);
        }
    }

    /// <summary>Outgoing calls to other members (forwarded writes, joins) carry the token and trust their CA.</summary>
    public static void ConfigureMemberClients(IServiceCollection services, ServerOptions options)
    {
        X509Certificate2Collection? trusted = options.TlsCa is null ? null : CertificateFiles.LoadCaCertificates(options.TlsCa);
        services.AddHttpClient(string.Empty)
            .ConfigureHttpClient(client =>
            {
                if (options.AuthToken is { } token)
                {
                    client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
                }
            })
            .ConfigurePrimaryHttpMessageHandler(() =>
            {
                var handler = new SocketsHttpHandler();
                if (trusted is not null)
                {
                    handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                        errors == SslPolicyErrors.None || (certificate is not null && ChainsTo(certificate, trusted));
                }

                return handler;
            });
    }

    /// <summary>Refuses every request without the token (401), except the health checks.</summary>
    public static void UseTokenAuthentication(WebApplication app, string token)
    {
        byte[] expected = Encoding.UTF8.GetBytes("Bearer " + token);
        app.Use(async (context, next) =>
        {
            if (Array.IndexOf(s_openPaths, context.Request.Path.Value) >= 0 || Presents(context.Request, expected))
            {
                await next(context);
                return;
            }

            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await context.Response.WriteAsJsonAsync(
                new ErrorView("missing or wrong API token: send 'Authorization: Bearer <token>'", "not-applied", null),
                ApiJson.Default.ErrorView);
        });
    }

    public static void WarnIfExposed(ILogger logger, ServerOptions options)
    {
        if (options.ClusterSecret is null && !IsLoopback(options.RaftAddress))
        {
            ServerLog.PeersUnauthenticated(logger, options.RaftAddress);
        }

        if (options.AuthToken is null && !IsLoopback(options.HttpAddress))
        {
            ServerLog.ApiUnauthenticated(logger, options.HttpAddress);
        }
    }

    private static bool Presents(HttpRequest request, byte[] expected)
    {
        string? header = request.Headers.Authorization;
        if (header is null)
        {
            return false;
        }

        byte[] presented = Encoding.UTF8.GetBytes(header);
        return CryptographicOperations.FixedTimeEquals(presented, expected);
    }

    private static X509Certificate2 LoadCertificate(string certificate, string? key) =>
        certificate.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || certificate.EndsWith(".p12", StringComparison.OrdinalIgnoreCase)
            ? CertificateFiles.LoadPfx(certificate, Environment.GetEnvironmentVariable("STCACHE_PFX_PASSWORD"))
            : CertificateFiles.Load(certificate, key!);

    private static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection trusted)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }

    private static bool IsLoopback(string address)
    {
        if (CommandLine.IsAnyHost(address))
        {
            return false;
        }

        string normalized = CommandLine.NormalizeAddress(address);
        string host = normalized[..normalized.LastIndexOf(':')].Trim('[', ']');
        return host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
    }
}
