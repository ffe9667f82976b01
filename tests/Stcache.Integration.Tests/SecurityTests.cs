using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>
/// A static cluster with every protection on: peer TLS from a private CA, a cluster secret, HTTPS for the API and
/// an API token. Writes sent to a follower must still be forwarded (the token and the CA travel with them).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "xunit calls DisposeAsync, which disposes the client")]
public sealed class SecurityTests : ProcessTest
{
    private const string Token = "integration-test-token-0123456789";
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(40);
    private HttpClient? _client;

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _client?.Dispose();
    }

    [Fact]
    public async Task SecuredClusterServesOnlyAuthenticatedClientsAndForwardsWrites()
    {
        var (ca, caPath) = WriteCertificateAuthority();
        string secretPath = Path.Combine(WorkDirectory.Path, "secret");
        await File.WriteAllTextAsync(secretPath, "a-cluster-secret-of-enough-bytes\n");
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToList();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        for (int i = 0; i < 3; i++)
        {
            var (cert, key) = WriteNodeCertificate(ca, $"node{i + 1}");
            int id = i + 1;
            var node = new Node($"n{id}", WorkDirectory.Path, ports[i].Http, ports[i].Raft, n =>
            [
                $"--http_addr=127.0.0.1:{n.HttpPort}", $"--raft_addr=127.0.0.1:{n.RaftPort}", $"--raft_id={id}",
                $"--raft_cluster={cluster}", $"--node={Path.Combine(WorkDirectory.Path, $"data{id}")}",
                $"--cluster-secret-file={secretPath}", $"--peer-tls-cert={cert}", $"--peer-tls-key={key}", $"--peer-tls-ca={caPath}",
                $"--tls-cert={cert}", $"--tls-key={key}", $"--tls-ca={caPath}", $"--auth-token={Token}",
            ]);
            Nodes.Add(node);
            node.Start();
        }

        _client = TrustingClient(ca);
        Node leader = await WaitForLeaderAsync();
        Node follower = Nodes.First(n => n != leader);

        // Health checks need no token; everything else does.
        Assert.Equal(HttpStatusCode.OK, (await _client.GetAsync($"https://{follower.Http}/healthz")).StatusCode);
        using (var anonymous = await _client.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"https://{follower.Http}/v1/status")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }

        using (var wrongToken = Request(HttpMethod.Put, $"https://{follower.Http}/v1/kv/k", "nope", "wrong-token-wrong-token"))
        {
            using var refused = await _client.SendAsync(wrongToken);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        // A write to a follower is forwarded to the leader over HTTPS with the token, and is then read everywhere.
        // Right after the election the follower may not know the leader's address yet: it waits for it (no 503).
        var (putStatus, putBody) = await SendThroughElectionsAsync(() => Request(HttpMethod.Put, $"https://{follower.Http}/v1/kv/secure", "value", Token));
        Assert.True(putStatus == HttpStatusCode.OK, $"{(int)putStatus} {putBody}");

        foreach (var node in Nodes)
        {
            var (getStatus, value) = await SendThroughElectionsAsync(() => Request(HttpMethod.Get, $"https://{node.Http}/v1/kv/secure", null, Token));
            Assert.True(getStatus == HttpStatusCode.OK, $"{node.Name}: {(int)getStatus} {value}");
            Assert.Equal("value", value);
        }

        // Plain HTTP is not served on an HTTPS port.
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => Api.Client.GetAsync($"http://{leader.Http}/healthz"));
    }

    [Fact]
    public async Task ProcessesWithoutTheSecretCanNeitherJoinNorSpeakRaft()
    {
        // A cluster with a secret and a token (plain HTTP, no TLS, so only the secret guards the raft port), and two
        // intruders that have neither: one founding its own cluster that names the members' raft addresses, so it
        // dials them and asks for votes; one asking a member to add it.
        string secretPath = Path.Combine(WorkDirectory.Path, "secret");
        await File.WriteAllTextAsync(secretPath, "a-cluster-secret-of-enough-bytes\n");
        var ports = Enumerable.Range(0, 4).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToList();
        string cluster = string.Join(',', ports.Take(3).Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var members = Enumerable.Range(1, 3).Select(id =>
        {
            var node = new Node($"n{id}", WorkDirectory.Path, ports[id - 1].Http, ports[id - 1].Raft, n =>
                [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={id}", $"--raft_cluster={cluster}",
                 $"--node={Path.Combine(WorkDirectory.Path, $"data{id}")}", $"--cluster-secret-file={secretPath}", $"--auth-token={Token}"]);
            Nodes.Add(node);
            node.Start();
            return node;
        }).ToArray();
        _client = new HttpClient { Timeout = TimeSpan.FromSeconds(15) };
        var leader = await WaitForLeaderAsync("http");
        using (var put = await _client.SendAsync(Request(HttpMethod.Put, $"http://{leader.Http}/v1/kv/guarded", "before", Token)))
        {
            Assert.True(put.IsSuccessStatusCode, put.StatusCode.ToString());
        }

        var before = await StatusAsync(leader);

        var campaigner = new Node("campaigner", WorkDirectory.Path, ports[3].Http, ports[3].Raft, n =>
            [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", "--raft_id=4", $"--raft_cluster={cluster},4/{n.Raft}",
             $"--node={Path.Combine(WorkDirectory.Path, "campaigner")}"]);
        var joiner = new Node("joiner", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            [$"--http={n.Http}", $"--raft={n.Raft}", $"--node={Path.Combine(WorkDirectory.Path, "joiner")}", $"--join={leader.Http}"]);
        Nodes.Add(campaigner);
        Nodes.Add(joiner);
        campaigner.Start();
        joiner.Start();

        // Each intruder has been turned away: by every member's handshake, and by the token.
        await Api.WaitUntilAsync("the campaigner is refused by all three members", () => Task.FromResult(
            members.All(m => campaigner.Output.Contains($"Connection to peer {m.Name[1..]} at {m.Raft} failed", StringComparison.Ordinal))
            && campaigner.Output.Contains("the listener failed authentication", StringComparison.Ordinal)), s_wait, [.. Nodes]);
        await Api.WaitUntilAsync("the joiner is refused", () => Task.FromResult(
            joiner.Output.Contains("failed, retrying", StringComparison.Ordinal) && joiner.Output.Contains("401", StringComparison.Ordinal)), s_wait, [.. Nodes]);
        await Api.WaitUntilAsync("the members logged the refused handshakes", () => Task.FromResult(
            members.Count(m => m.Output.Contains("refused", StringComparison.Ordinal)) == 3), s_wait, [.. Nodes]);

        // Nothing changed: same term and leader, same three members, and writes still work. A loaded machine can
        // delay heartbeats past the election timeout (seen on a test run with other clusters beside this one): then
        // a member's own election may have moved the term, and a member must have been elected in it.
        var after = await StatusAsync(leader);
        ulong termBefore = before.GetProperty("term").GetUInt64();
        ulong termAfter = after.GetProperty("term").GetUInt64();
        if (termAfter == termBefore)
        {
            Assert.Equal(before.GetProperty("leader").GetString(), after.GetProperty("leader").GetString());
        }
        else
        {
            Assert.True(members.Any(m => m.Output.Contains($"became leader at term {termAfter}", StringComparison.Ordinal)),
                $"the term moved from {termBefore} to {termAfter} with no member elected in it:\n" +
                string.Join('\n', Nodes.Select(n => $"---- {n.Name} ----\n{Api.Tail(n.Output, 30)}")));
        }

        Assert.Equal(3, after.GetProperty("voters").GetArrayLength() + after.GetProperty("learners").GetArrayLength());
        using (var put = await _client.SendAsync(Request(HttpMethod.Put, $"http://{leader.Http}/v1/kv/guarded", "after", Token)))
        {
            Assert.True(put.IsSuccessStatusCode, put.StatusCode.ToString());
        }

        // The campaigner never received the cluster's data.
        var (status, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{campaigner.Http}/v1/kv/guarded?consistency=stale");
        Assert.Equal(HttpStatusCode.NotFound, status);

        // With the token but not the secret, the membership API (an administrator's API) adds the process as a
        // learner, but the leader cannot complete a handshake with it: it never receives an entry, never becomes a
        // voter, and an administrator removes it.
        var tokenOnly = new Node("token-only", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            [$"--http={n.Http}", $"--raft={n.Raft}", $"--node={Path.Combine(WorkDirectory.Path, "token-only")}", $"--join={leader.Http}", $"--auth-token={Token}"]);
        Nodes.Add(tokenOnly);
        tokenOnly.Start();
        await Api.WaitUntilAsync("the leader fails to reach the token-only learner", () => Task.FromResult(
            leader.Output.Contains("learner", StringComparison.OrdinalIgnoreCase) && leader.Output.Contains($"at {tokenOnly.Raft} failed", StringComparison.Ordinal)),
            s_wait, [.. Nodes]);
        var withLearner = await StatusAsync(leader);
        Assert.Equal(3, withLearner.GetProperty("voters").GetArrayLength());
        Assert.Equal(1, withLearner.GetProperty("learners").GetArrayLength());
        using (var put = await _client.SendAsync(Request(HttpMethod.Put, $"http://{leader.Http}/v1/kv/guarded", "with-learner", Token)))
        {
            Assert.True(put.IsSuccessStatusCode, put.StatusCode.ToString());
        }

        using (var get = await _client.SendAsync(Request(HttpMethod.Get, $"http://{tokenOnly.Http}/v1/kv/guarded?consistency=stale", null, Token)))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }

        string learnerId = withLearner.GetProperty("learners")[0].GetString()!;
        using (var remove = await _client.SendAsync(Request(HttpMethod.Delete, $"http://{leader.Http}/v1/cluster/members/{learnerId}", null, Token)))
        {
            Assert.True(remove.IsSuccessStatusCode, remove.StatusCode.ToString());
        }

        // The removal is answered once applied, after the leader published the status that shows it: one read.
        var withoutLearner = await StatusAsync(leader);
        Assert.Equal(0, withoutLearner.GetProperty("learners").GetArrayLength());
        Assert.Equal(3, withoutLearner.GetProperty("voters").GetArrayLength());
    }

    /// <summary>
    /// A request through <see cref="_client"/>, sent again for up to 15 s while it is answered 503 with an outcome
    /// that says it certainly had no effect (an election, which two loaded cores can cause at any time), as
    /// <see cref="Api.SendThroughElectionsAsync"/> does for plain HTTP.
    /// </summary>
    private async Task<(HttpStatusCode Status, string Body)> SendThroughElectionsAsync(Func<HttpRequestMessage> request)
    {
        (HttpStatusCode Status, string Body) answer = default;
        await Api.WaitUntilAsync("an answer with an effect (not a 503 of an election)", async () =>
        {
            using var message = request();
            using var response = await _client!.SendAsync(message);
            answer = (response.StatusCode, await response.Content.ReadAsStringAsync());
            return !(answer.Status == HttpStatusCode.ServiceUnavailable
                && (answer.Body.Contains("\"outcome\":\"not-applied\"", StringComparison.Ordinal) || answer.Body.Contains("\"outcome\":\"none\"", StringComparison.Ordinal)));
        }, TimeSpan.FromSeconds(15), [.. Nodes]);
        return answer;
    }

    private async Task<JsonElement> StatusAsync(Node node)
    {
        using var response = await _client!.SendAsync(Request(HttpMethod.Get, $"http://{node.Http}/v1/status", null, Token));
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private async Task<Node> WaitForLeaderAsync(string scheme = "https")
    {
        Node? leader = null;
        await Api.WaitUntilAsync("a leader over HTTPS with the token", async () =>
        {
            foreach (var node in Nodes)
            {
                using var response = await _client!.SendAsync(Request(HttpMethod.Get, $"{scheme}://{node.Http}/v1/status", null, Token));
                if (!response.IsSuccessStatusCode)
                {
                    return false;
                }

                var status = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
                if (status.GetProperty("role").GetString() == "leader")
                {
                    leader = node;
                }
            }

            return leader is not null;
        }, s_wait, [.. Nodes]);
        return leader!;
    }

    private static HttpRequestMessage Request(HttpMethod method, string url, string? body, string token)
    {
        var request = new HttpRequestMessage(method, url);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        }

        return request;
    }

    private static HttpClient TrustingClient(X509Certificate2 ca)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            if (certificate is null)
            {
                return false;
            }

            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            using var leaf = new X509Certificate2(certificate);
            return chain.Build(leaf);
        };
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(15) };
    }

    private (X509Certificate2 Ca, string Path) WriteCertificateAuthority()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=stcache test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        string path = Path.Combine(WorkDirectory.Path, "ca.pem");
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
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        byte[] serial = RandomNumberGenerator.GetBytes(8);
        using var certificate = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-5), new DateTimeOffset(ca.NotAfter.ToUniversalTime(), TimeSpan.Zero).AddMinutes(-1), serial);
        string certPath = Path.Combine(WorkDirectory.Path, $"{name}.pem");
        string keyPath = Path.Combine(WorkDirectory.Path, $"{name}.key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certPath, keyPath);
    }
}
