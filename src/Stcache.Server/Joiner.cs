using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Stcache.Server;

/// <summary>Asks a running member to add this node (the seeds' join step), retrying with back-off.</summary>
internal sealed class Joiner(IHttpClientFactory clients, ILogger logger)
{
    /// <summary>Joins; on success seeds <paramref name="book"/> with the members' addresses from the answer, so this
    /// node can answer the leader before it has replayed the log that names it.</summary>
    public async Task<bool> JoinAsync(ServerOptions options, MemberInfo self, MemberBook book, CancellationToken cancellationToken)
    {
        string target = CommandLine.NormalizeAddress(options.Join!);
        var delay = TimeSpan.FromMilliseconds(200);
        using var client = clients.CreateClient();
        client.Timeout = options.RequestTimeout + TimeSpan.FromSeconds(2);
        ServerLog.Joining(logger, target);
        while (!cancellationToken.IsCancellationRequested)
        {
            string reason;
            try
            {
                using var response = await client.PostAsJsonAsync(
                    $"http://{target}/v1/cluster/members", self, MembershipJson.Default.MemberInfo, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    try
                    {
                        var members = JsonSerializer.Deserialize(await response.Content.ReadAsByteArrayAsync(cancellationToken), ApiJson.Default.MemberViewArray) ?? [];
                        foreach (var member in members)
                        {
                            if (ulong.TryParse(member.Id, out ulong id) && member.RaftAddress.Length > 0)
                            {
                                book.Merge(new MemberInfo(id, member.Name, member.RaftAddress, member.ApiAddress));
                            }
                        }
                    }
                    catch (JsonException)
                    {
                        // An older member answering "ok": the log will name the members.
                    }

                    ServerLog.Joined(logger, target);
                    return true;
                }

                reason = $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}";
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return false;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                reason = e.Message;
            }

            ServerLog.JoinRetry(logger, target, reason);
            try
            {
                await Task.Delay(delay, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return false;
            }

            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
        }

        return false;
    }
}
