using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Spectre.Console;
using Spectre.Console.Rendering;
using Stcache.Server;

namespace Stcache.Cli;

/// <summary>One member's row of <c>stcachectl cluster</c>: its status as it reports it, and its lag.</summary>
public sealed record ClusterRow(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("apiAddress")] string ApiAddress,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("reachable")] bool Reachable,
    [property: JsonPropertyName("term")] ulong? Term,
    [property: JsonPropertyName("commit")] ulong? Commit,
    [property: JsonPropertyName("applied")] ulong? Applied,
    [property: JsonPropertyName("lag")] ulong? Lag,
    [property: JsonPropertyName("keys")] int? Keys,
    [property: JsonPropertyName("error")] string? Error);

public sealed record ClusterSummary(
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("members")] ClusterRow[] Members);

[JsonSerializable(typeof(ClusterSummary))]
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
public sealed partial class CliJson : JsonSerializerContext
{
}

internal static class ClusterRows
{
    /// <summary>Lag is the entries a member has yet to apply of what the leader has committed: the leader's commit
    /// index (as the leader reports it, else the highest any member reports) minus the member's applied index.</summary>
    public static ClusterSummary From(ClusterView view)
    {
        var leaderStatus = view.Members.FirstOrDefault(m => m.Member.Id == view.Leader)?.Status;
        ulong reference = leaderStatus?.Commit ?? view.Members.Where(m => m.Status is not null).Select(m => m.Status!.Commit).DefaultIfEmpty(0UL).Max();
        var rows = view.Members.Select(m =>
        {
            var s = m.Status;
            return new ClusterRow(m.Member.Id, m.Member.Name, m.Member.ApiAddress, s?.Role ?? m.Member.Role, s is not null,
                s?.Term, s?.Commit, s?.Applied, s is null ? null : reference > s.Applied ? reference - s.Applied : 0, s?.Keys, m.Error);
        }).ToArray();
        return new ClusterSummary(view.Leader, view.Term, rows);
    }
}

/// <summary>Polls /v1/cluster for <c>watch</c>; a poll that fails shows the error instead of ending the view.</summary>
internal sealed class ClusterWatcher(ApiClient client)
{
    public async Task<ClusterSummary> PollAsync(CancellationToken cancellationToken) =>
        ClusterRows.From(await client.GetJsonAsync("/v1/cluster", ApiJson.Default.ClusterView, cancellationToken));

    public async Task<IRenderable> RenderAsync(CancellationToken cancellationToken)
    {
        try
        {
            var table = Render.ClusterTable(await PollAsync(cancellationToken));
            table.Caption($"updated {DateTime.Now:HH:mm:ss}  (Ctrl-C to stop)");
            return table;
        }
        catch (Exception e) when (e is NoNodeAnsweredException or RequestFailedException or JsonException or HttpRequestException or TaskCanceledException)
        {
            return new Markup($"[red]{Markup.Escape(e.Message)}[/]  (retrying; Ctrl-C to stop)");
        }
    }
}

internal static class Render
{
    private static readonly JsonSerializerOptions s_indented = new() { WriteIndented = true };

    public static string ToJson<T>(T value, JsonTypeInfo<T> type, bool indented = true)
    {
        string compact = JsonSerializer.Serialize(value, type);
        return indented ? JsonSerializer.Serialize(JsonDocument.Parse(compact).RootElement, s_indented) : compact;
    }

    public static Table StatusTable(StatusView s)
    {
        var table = new Table().Border(TableBorder.Rounded).AddColumn("field").AddColumn("value");
        void Row(string name, string value) => table.AddRow(Markup.Escape(name), Markup.Escape(value));
        Row("id", s.Id);
        Row("name", s.Name);
        Row("role", s.Role);
        Row("term", Number(s.Term));
        Row("leader", s.Leader == "0" ? "(none)" : $"{s.Leader} {s.LeaderAddress}".Trim());
        Row("commit", Number(s.Commit));
        Row("applied", Number(s.Applied));
        Row("last index", Number(s.LastIndex));
        Row("snapshot index", Number(s.SnapshotIndex));
        Row("keys", s.Keys.ToString(CultureInfo.InvariantCulture));
        Row("voters", string.Join(", ", s.Voters));
        Row("learners", s.Learners.Length == 0 ? "-" : string.Join(", ", s.Learners));
        return table;
    }

    public static Table MembersTable(IEnumerable<MemberView> members)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("ID").AddColumn("NAME").AddColumn("ROLE").AddColumn("RAFT").AddColumn("API").AddColumn(new TableColumn("MATCH").RightAligned());
        foreach (var m in members)
        {
            table.AddRow(Markup.Escape(m.Id), Markup.Escape(m.Name), RoleMarkup(m.Role), Markup.Escape(m.RaftAddress), Markup.Escape(m.ApiAddress),
                m.Match is { } match ? Number(match) : "-");
        }

        return table;
    }

    public static Table ClusterTable(ClusterSummary view)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("ID").AddColumn("NAME").AddColumn("API").AddColumn("ROLE")
            .AddColumn(new TableColumn("TERM").RightAligned()).AddColumn(new TableColumn("COMMIT").RightAligned())
            .AddColumn(new TableColumn("APPLIED").RightAligned()).AddColumn(new TableColumn("LAG").RightAligned())
            .AddColumn(new TableColumn("KEYS").RightAligned());
        foreach (var r in view.Members)
        {
            table.AddRow(
                Markup.Escape(r.Id), Markup.Escape(r.Name), Markup.Escape(r.ApiAddress),
                r.Reachable ? RoleMarkup(r.Role) : "[red]down[/]",
                Optional(r.Term), Optional(r.Commit), Optional(r.Applied),
                r.Lag is > 0 ? $"[yellow]{Number(r.Lag.Value)}[/]" : Optional(r.Lag),
                r.Keys is { } keys ? keys.ToString("N0", CultureInfo.InvariantCulture) : "-");
        }

        table.Title($"leader {Markup.Escape(view.Leader == "0" ? "(none)" : view.Leader)}, term {Number(view.Term)}");
        return table;
    }

    private static string RoleMarkup(string role) => role switch
    {
        "leader" => "[green]leader[/]",
        "candidate" => "[yellow]candidate[/]",
        _ => Markup.Escape(role),
    };

    private static string Optional(ulong? value) => value is { } v ? Number(v) : "-";

    private static string Number(ulong value) => value.ToString(CultureInfo.InvariantCulture);
}
