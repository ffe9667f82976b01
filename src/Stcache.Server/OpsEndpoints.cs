using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Stcache.Raft;
using Stcache.Storage;

namespace Stcache.Server;

/// <summary>
/// Endpoints for operators: the snapshot download behind <c>stcachectl snapshot save</c>, and the dashboard at
/// <c>/ui</c>. They sit behind the same token check as the rest of the API.
/// </summary>
internal static class OpsEndpoints
{
    public const string SnapshotIndexHeader = "X-Stcache-Snapshot-Index";
    public const string SnapshotTermHeader = "X-Stcache-Snapshot-Term";

    public static void Map(WebApplication app, NodeRuntime node, ServerOptions options)
    {
        app.MapGet("/v1/snapshot/download", (HttpContext context) => DownloadSnapshotAsync(context, node));
        app.MapPrometheusScrapingEndpoint("/metrics");

        // Gauges read from this node at each scrape. The memory limit arrives with --max-memory (issue 11).
        var metrics = new NodeMetrics(node.Host, () => Path.Combine(node.DataPath, DataDirectory.SnapshotDirectoryName), () => null);
        app.Lifetime.ApplicationStopped.Register(metrics.Dispose);
        var aggregates = new LocalAggregates();
        app.Lifetime.ApplicationStopped.Register(aggregates.Dispose);
        Dashboard.Map(app, node, options, aggregates);
    }

    /// <summary>
    /// Takes a snapshot of everything applied here, then streams its file as stored (header, data, checksummed
    /// trailer), so the client can verify it end to end. Asked of the leader, it holds every acknowledged write.
    /// </summary>
    private static async Task DownloadSnapshotAsync(HttpContext context, NodeRuntime node)
    {
        SnapshotMetadata metadata;
        try
        {
            metadata = await node.Host.SnapshotAsync(context.RequestAborted);
        }
        catch (RaftHostException e)
        {
            await WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, "snapshot failed: " + e.Message);
            return;
        }
        catch (IOException e)
        {
            await WriteErrorAsync(context, StatusCodes.Status500InternalServerError, "snapshot failed: " + e.Message);
            return;
        }

        if (metadata.Index == LogIndex.Zero)
        {
            await WriteErrorAsync(context, StatusCodes.Status409Conflict, "nothing applied yet, so there is nothing to snapshot");
            return;
        }

        // Opened at once: a later snapshot may prune this file, and an open file outlives its deletion.
        string directory = Path.Combine(node.DataPath, DataDirectory.SnapshotDirectoryName);
        FileStream? file = TryOpen(Path.Combine(directory, FileSnapshotStore.FileName(metadata)));
        if (file is null)
        {
            foreach (string newer in Directory.GetFiles(directory, "*" + FileSnapshotStore.Extension).OrderDescending(StringComparer.Ordinal))
            {
                file = TryOpen(newer);
                if (file is not null)
                {
                    break;
                }
            }
        }

        if (file is null)
        {
            await WriteErrorAsync(context, StatusCodes.Status500InternalServerError, "the snapshot file vanished before it could be read; try again");
            return;
        }

        await using (file)
        {
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = file.Length;
            context.Response.Headers.ContentDisposition = $"attachment; filename=\"{Path.GetFileName(file.Name)}\"";
            context.Response.Headers[SnapshotIndexHeader] = metadata.Index.Value.ToString(CultureInfo.InvariantCulture);
            context.Response.Headers[SnapshotTermHeader] = metadata.Term.Value.ToString(CultureInfo.InvariantCulture);
            await file.CopyToAsync(context.Response.Body, context.RequestAborted);
        }
    }

    private static FileStream? TryOpen(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 128 * 1024, useAsync: true);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    internal static async Task WriteErrorAsync(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        context.Response.Headers[HttpApi.OutcomeHeader] = "none";
        await context.Response.WriteAsJsonAsync(new ErrorView(message, "none", null), ApiJson.Default.ErrorView, cancellationToken: context.RequestAborted);
    }
}
