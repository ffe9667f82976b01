using System.Globalization;

namespace Stcache.Testing;

public enum KvOperationKind : byte
{
    Get = 1,
    Set = 2,
    Delete = 3,

    /// <summary>Sets <see cref="KvOperation.Value"/> if the current value equals <see cref="KvOperation.Expected"/>
    /// (null expected means "absent").</summary>
    CompareAndSet = 4,
}

/// <summary>
/// One client operation on one key. <see cref="CompleteTime"/> is null when the outcome is unknown (timed out, lost
/// connection, still running at the end): such an operation may or may not have taken effect, at any time after
/// its invocation.
/// </summary>
public sealed class KvOperation
{
    internal KvOperation(int id, int client, KvOperationKind kind, string key, string? value, string? expected, long invokeTime)
    {
        Id = id;
        Client = client;
        Kind = kind;
        Key = key;
        Value = value;
        Expected = expected;
        InvokeTime = invokeTime;
    }

    public int Id { get; }

    public int Client { get; }

    public KvOperationKind Kind { get; }

    public string Key { get; }

    /// <summary>Set / CompareAndSet: the value written.</summary>
    public string? Value { get; }

    /// <summary>CompareAndSet: the value expected (null = absent).</summary>
    public string? Expected { get; }

    public long InvokeTime { get; }

    /// <summary>Null while the outcome is unknown.</summary>
    public long? CompleteTime { get; private set; }

    /// <summary>Get: the value read (null = absent).</summary>
    public string? Result { get; private set; }

    /// <summary>CompareAndSet: whether the swap happened.</summary>
    public bool Succeeded { get; private set; }

    public bool IsComplete => CompleteTime is not null;

    internal void Complete(long time, string? result, bool succeeded)
    {
        if (CompleteTime is not null)
        {
            throw new InvalidOperationException($"operation {Id} completed twice");
        }

        if (time < InvokeTime)
        {
            throw new ArgumentOutOfRangeException(nameof(time), "completion before invocation");
        }

        CompleteTime = time;
        Result = result;
        Succeeded = succeeded;
    }

    public override string ToString()
    {
        string window = string.Create(CultureInfo.InvariantCulture, $"[{InvokeTime}, {(CompleteTime is { } c ? c.ToString(CultureInfo.InvariantCulture) : "?")}]");
        string body = Kind switch
        {
            KvOperationKind.Get => $"get({Key}) -> {(IsComplete ? Show(Result) : "?")}",
            KvOperationKind.Set => $"set({Key}, {Show(Value)})",
            KvOperationKind.Delete => $"delete({Key})",
            KvOperationKind.CompareAndSet => $"cas({Key}, {Show(Expected)} -> {Show(Value)}) -> {(IsComplete ? (Succeeded ? "ok" : "failed") : "?")}",
            _ => "?",
        };
        return $"#{Id} c{Client} {body} {window}";
    }

    private static string Show(string? value) => value is null ? "absent" : $"'{value}'";
}

/// <summary>A recorded history of concurrent key-value operations. Times are any monotonic clock (ticks, ns).</summary>
public sealed class KvHistory
{
    private readonly List<KvOperation> _operations = [];

    public IReadOnlyList<KvOperation> Operations => _operations;

    public KvOperation InvokeGet(int client, string key, long time) => Add(client, KvOperationKind.Get, key, null, null, time);

    public KvOperation InvokeSet(int client, string key, string value, long time) => Add(client, KvOperationKind.Set, key, value, null, time);

    public KvOperation InvokeDelete(int client, string key, long time) => Add(client, KvOperationKind.Delete, key, null, null, time);

    public KvOperation InvokeCompareAndSet(int client, string key, string? expected, string value, long time) =>
        Add(client, KvOperationKind.CompareAndSet, key, value, expected, time);

    /// <summary>Completes a get with the value read (null = absent).</summary>
    public static void CompleteGet(KvOperation operation, string? value, long time)
    {
        Require(operation, KvOperationKind.Get);
        operation.Complete(time, value, true);
    }

    /// <summary>Completes a set or delete that was acknowledged.</summary>
    public static void CompleteWrite(KvOperation operation, long time)
    {
        if (operation.Kind is not (KvOperationKind.Set or KvOperationKind.Delete))
        {
            throw new ArgumentException("not a set or delete", nameof(operation));
        }

        operation.Complete(time, null, true);
    }

    public static void CompleteCompareAndSet(KvOperation operation, bool succeeded, long time)
    {
        Require(operation, KvOperationKind.CompareAndSet);
        operation.Complete(time, null, succeeded);
    }

    private KvOperation Add(int client, KvOperationKind kind, string key, string? value, string? expected, long time)
    {
        var operation = new KvOperation(_operations.Count, client, kind, key, value, expected, time);
        _operations.Add(operation);
        return operation;
    }

    private static void Require(KvOperation operation, KvOperationKind kind)
    {
        if (operation.Kind != kind)
        {
            throw new ArgumentException($"operation {operation.Id} is a {operation.Kind}, not a {kind}", nameof(operation));
        }
    }
}
