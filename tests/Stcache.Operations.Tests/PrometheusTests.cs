using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Stcache.Integration.Tests;

namespace Stcache.Operations.Tests;

/// <summary>
/// A real Prometheus server (Debian's prometheus, installed by scripts/ensure-deps.sh) scrapes a 3-node cluster
/// with a configuration this test writes; its query API must return each node's leader-change and commit-index
/// series.
/// </summary>
public sealed class PrometheusTests : ClusterTest
{
    private Process? _prometheus;

    [Fact]
    public async Task Prometheus_scrapes_leader_changes_and_commit_index_from_all_three_nodes()
    {
        string binary = FindPrometheus() ?? throw new Xunit.Sdk.XunitException(
            "the prometheus binary is not installed; run scripts/ensure-deps.sh (Debian package prometheus)");
        var nodes = await StartThreeAsync();
        for (int i = 0; i < 10; i++)
        {
            await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{nodes[i % 3].Http}/v1/kv/p{i}", "v"u8.ToArray());
        }

        int port = FreePorts.Next();
        string directory = Path.Combine(WorkDirectory.Path, "prometheus");
        Directory.CreateDirectory(directory);
        string config = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: stcache
                static_configs:
                  - targets: [{string.Join(", ", nodes.Select(n => $"'{n.Http}'"))}]
            """);
        var output = new System.Text.StringBuilder();
        var info = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[]
        {
            "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(directory, "data"),
            "--web.listen-address=127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture),
        })
        {
            info.ArgumentList.Add(arg);
        }

        _prometheus = Process.Start(info)!;
        _prometheus.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        _prometheus.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        _prometheus.BeginOutputReadLine();
        _prometheus.BeginErrorReadLine();

        string api = $"http://127.0.0.1:{port}/api/v1/query?query=";
        foreach (string series in new[] { "stcache_leader_changes_total", "stcache_commit_index", "stcache_wal_save_seconds_count" })
        {
            JsonElement[] results = [];
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (DateTime.UtcNow < deadline && results.Length < 3)
            {
                try
                {
                    using var document = JsonDocument.Parse(await Api.Client.GetStringAsync(api + Uri.EscapeDataString(series)));
                    results = [.. document.RootElement.GetProperty("data").GetProperty("result").EnumerateArray().Select(r => r.Clone())];
                }
                catch (HttpRequestException)
                {
                    // Prometheus is still starting.
                }

                if (results.Length < 3)
                {
                    await Task.Delay(250);
                }
            }

            string log;
            lock (output)
            {
                log = output.ToString();
            }

            Assert.True(results.Length == 3, $"{series}: {results.Length} series after 60 s; prometheus says:\n{Api.Tail(log, 30)}");
            var instances = results.Select(r => r.GetProperty("metric").GetProperty("instance").GetString()).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(nodes.Select(n => n.Http).Order(StringComparer.Ordinal), instances);
            foreach (var result in results)
            {
                double value = double.Parse(result.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
                Assert.True(value >= 1, $"{series} on {result.GetProperty("metric").GetProperty("instance")} is {value}");
            }
        }
    }

    public override async Task DisposeAsync()
    {
        if (_prometheus is { HasExited: false })
        {
            _prometheus.Kill(entireProcessTree: true);
            await _prometheus.WaitForExitAsync();
        }

        _prometheus?.Dispose();
        await base.DisposeAsync();
    }

    private static string? FindPrometheus() =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "prometheus")).FirstOrDefault(File.Exists);
}
