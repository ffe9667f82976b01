using System.Text;
using Stcache.Cache;

namespace Stcache.Cache.Tests;

/// <summary>
/// The slow, obvious cache: a dictionary of keys with an explicit time, written from Redis's documented behaviour
/// without any of the state machine's bookkeeping (no sampling arrays, no accounting, no copy-on-write). Keys and
/// fields are bytes held as Latin-1 strings so ordinal order is byte order.
/// </summary>
internal sealed class ReferenceModel
{
    private readonly Dictionary<string, Item> _items = new(StringComparer.Ordinal);

    private sealed class Item
    {
        public byte[]? Text { get; set; }

        public SortedDictionary<string, byte[]>? Hash { get; set; }

        public long ExpiresAt { get; set; }

        public ulong Version { get; set; }

        public Item Clone() => new()
        {
            Text = Text,
            Hash = Hash is null ? null : new SortedDictionary<string, byte[]>(Hash, StringComparer.Ordinal),
            ExpiresAt = ExpiresAt,
            Version = Version,
        };
    }

    private static string K(byte[] key) => Encoding.Latin1.GetString(key);

    private static byte[] B(string key) => Encoding.Latin1.GetBytes(key);

    private static readonly Reply s_wrongType = Reply.Error(RedisErrors.WrongType);

    private long _now;
    private ulong _index;

    /// <summary>The keys visible at <paramref name="now"/>, rendered like <see cref="KeyDump.Describe"/> without access data.</summary>
    public IEnumerable<string> Visible(long now) => _items
        .Where(pair => pair.Value.ExpiresAt == 0 || pair.Value.ExpiresAt > now)
        .Select(pair => new KeyDump(B(pair.Key), pair.Value.Text, pair.Value.Hash?.Select(f => (B(f.Key), f.Value)).ToArray(), pair.Value.ExpiresAt, pair.Value.Version, 0, 0, 0).Describe(false))
        .Order(StringComparer.Ordinal);

    public IReadOnlyCollection<string> VisibleKeys(long now) =>
        _items.Where(pair => pair.Value.ExpiresAt == 0 || pair.Value.ExpiresAt > now).Select(pair => pair.Key).ToHashSet();

    public bool IsHash(string key) => _items[key].Hash is not null;

    private Item? Get(byte[] key)
    {
        if (!_items.TryGetValue(K(key), out var item))
        {
            return null;
        }

        if (item.ExpiresAt != 0 && item.ExpiresAt <= _now)
        {
            if (_index != 0)
            {
                _items.Remove(K(key));
            }

            return null;
        }

        return item;
    }

    private void Put(byte[] key, Item item)
    {
        item.Version = _index;
        _items[K(key)] = item;
    }

    public Reply Execute(Invocation call, ulong index, long now)
    {
        _now = now;
        _index = index;
        if (call.Op == Op.Batch)
        {
            return Reply.Array(call.Batch.Select(One).ToArray());
        }

        return One(call);
    }

    private Reply One(Invocation call)
    {
        var a = call.Args;
        switch (call.Op)
        {
            case Op.Get:
                return Get(a[0]) switch { null => Reply.Nil, { Text: { } t } => Reply.BulkOf(t), _ => s_wrongType };
            case Op.MGet:
                return Reply.Array(a.Select(k => Get(k)?.Text is { } t ? Reply.BulkOf(t) : Reply.Nil).ToArray());
            case Op.StrLen:
                return Get(a[0]) switch { null => Reply.Int(0), { Text: { } t } => Reply.Int(t.Length), _ => s_wrongType };
            case Op.GetRange:
                {
                    var item = Get(a[0]);
                    if (item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    string s = Encoding.Latin1.GetString(item?.Text ?? []);
                    long start = long.Parse(Encoding.ASCII.GetString(a[1]));
                    long end = long.Parse(Encoding.ASCII.GetString(a[2]));
                    int n = s.Length;
                    if (start < 0 && end < 0 && start > end)
                    {
                        return Reply.BulkOf([]);
                    }

                    start = start < 0 ? Math.Max(0, n + start) : start;
                    end = end < 0 ? Math.Max(0, n + end) : Math.Min(end, n - 1);
                    return start > end || n == 0 ? Reply.BulkOf([]) : Reply.BulkOf(B(s.Substring((int)start, (int)(end - start + 1))));
                }

            case Op.Exists or Op.Touch:
                return Reply.Int(a.Count(k => Get(k) is not null));
            case Op.Type:
                return Get(a[0]) switch { null => Reply.Simple("none"), { Text: not null } => Reply.Simple("string"), _ => Reply.Simple("hash") };
            case Op.DbSize:
                return Reply.Int(VisibleKeys(_now).Count);
            case Op.Ttl or Op.PTtl or Op.ExpireTime or Op.PExpireTime:
                {
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Int(-2);
                    }

                    if (item.ExpiresAt == 0)
                    {
                        return Reply.Int(-1);
                    }

                    long ms = call.Op is Op.ExpireTime or Op.PExpireTime ? item.ExpiresAt : item.ExpiresAt - _now;
                    return Reply.Int(call.Op is Op.PTtl or Op.PExpireTime ? ms : (ms + 500) / 1000);
                }

            case Op.HGet or Op.HMGet or Op.HGetAll or Op.HExists or Op.HLen or Op.HKeys or Op.HVals or Op.HStrLen:
                {
                    var item = Get(a[0]);
                    if (item is { Hash: null })
                    {
                        return s_wrongType;
                    }

                    var h = item?.Hash ?? new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
                    return call.Op switch
                    {
                        Op.HGet => Reply.BulkOrNil(h.GetValueOrDefault(K(a[1]))),
                        Op.HMGet => Reply.Array(a.Skip(1).Select(f => Reply.BulkOrNil(h.GetValueOrDefault(K(f)))).ToArray()),
                        Op.HGetAll => Reply.Map(h.SelectMany(p => new[] { Reply.BulkOf(B(p.Key)), Reply.BulkOf(p.Value) }).ToArray()),
                        Op.HExists => Reply.Int(h.ContainsKey(K(a[1])) ? 1 : 0),
                        Op.HLen => Reply.Int(h.Count),
                        Op.HKeys => Reply.Array(h.Keys.Select(f => Reply.BulkOf(B(f))).ToArray()),
                        Op.HVals => Reply.Array(h.Values.Select(Reply.BulkOf).ToArray()),
                        _ => Reply.Int(h.GetValueOrDefault(K(a[1]))?.Length ?? 0),
                    };
                }

            case Op.Set:
                {
                    var item = Get(a[0]);
                    bool withGet = (call.Flags & OpFlags.Get) != 0;
                    if (withGet && item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    var old = item?.Text is { } t ? Reply.BulkOf(t) : Reply.Nil;
                    if (((call.Flags & OpFlags.Nx) != 0 && item is not null) || ((call.Flags & OpFlags.Xx) != 0 && item is null))
                    {
                        return withGet ? old : Reply.Nil;
                    }

                    long expires = (call.Flags & OpFlags.HasExpiry) != 0 ? call.Number : (call.Flags & OpFlags.KeepTtl) != 0 && item is not null ? item.ExpiresAt : 0;
                    if (expires != 0 && expires <= _now)
                    {
                        _items.Remove(K(a[0]));
                    }
                    else
                    {
                        Put(a[0], new Item { Text = a[1], ExpiresAt = expires });
                    }

                    return withGet ? old : Reply.Ok;
                }

            case Op.SetNx:
                if (Get(a[0]) is not null)
                {
                    return Reply.Int(0);
                }

                Put(a[0], new Item { Text = a[1] });
                return Reply.Int(1);
            case Op.GetEx:
                {
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Nil;
                    }

                    if (item.Text is null)
                    {
                        return s_wrongType;
                    }

                    var reply = Reply.BulkOf(item.Text);
                    if ((call.Flags & OpFlags.HasExpiry) != 0)
                    {
                        if (call.Number <= _now)
                        {
                            _items.Remove(K(a[0]));
                        }
                        else
                        {
                            item.ExpiresAt = call.Number;
                            item.Version = _index;
                        }
                    }
                    else if (item.ExpiresAt != 0)
                    {
                        item.ExpiresAt = 0;
                        item.Version = _index;
                    }

                    return reply;
                }

            case Op.GetDel:
                {
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Nil;
                    }

                    if (item.Text is null)
                    {
                        return s_wrongType;
                    }

                    _items.Remove(K(a[0]));
                    return Reply.BulkOf(item.Text);
                }

            case Op.MSet or Op.MSetNx:
                if (call.Op == Op.MSetNx && a.Where((_, i) => i % 2 == 0).Any(k => Get(k) is not null))
                {
                    return Reply.Int(0);
                }

                for (int i = 0; i < a.Length; i += 2)
                {
                    Put(a[i], new Item { Text = a[i + 1] });
                }

                return call.Op == Op.MSet ? Reply.Ok : Reply.Int(1);
            case Op.Append:
                {
                    var item = Get(a[0]);
                    if (item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    byte[] joined = [.. item?.Text ?? [], .. a[1]];
                    Put(a[0], new Item { Text = joined, ExpiresAt = item?.ExpiresAt ?? 0 });
                    return Reply.Int(joined.Length);
                }

            case Op.SetRange:
                {
                    var item = Get(a[0]);
                    if (item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    byte[] current = item?.Text ?? [];
                    if (a[1].Length == 0)
                    {
                        return Reply.Int(current.Length);
                    }

                    var updated = new byte[Math.Max(current.Length, call.Number + a[1].Length)];
                    current.CopyTo(updated, 0);
                    a[1].CopyTo(updated, call.Number);
                    Put(a[0], new Item { Text = updated, ExpiresAt = item?.ExpiresAt ?? 0 });
                    return Reply.Int(updated.Length);
                }

            case Op.IncrBy:
                {
                    var item = Get(a[0]);
                    if (item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    long current = 0;
                    if (item is not null && !NumberText.TryParseInt64(item.Text, out current))
                    {
                        return Reply.Error(RedisErrors.NotInteger);
                    }

                    long result;
                    try
                    {
                        result = checked(current + call.Number);
                    }
                    catch (OverflowException)
                    {
                        return Reply.Error(RedisErrors.Overflow);
                    }

                    Put(a[0], new Item { Text = NumberText.Int64Bytes(result), ExpiresAt = item?.ExpiresAt ?? 0 });
                    return Reply.Int(result);
                }

            case Op.IncrByFloat:
                {
                    var item = Get(a[0]);
                    if (item is { Text: null })
                    {
                        return s_wrongType;
                    }

                    double current = 0;
                    if ((item is not null && !NumberText.TryParseDouble(item.Text, out current)) || !NumberText.TryParseDouble(a[1], out double increment))
                    {
                        return Reply.Error(RedisErrors.NotFloat);
                    }

                    double result = current + increment;
                    if (!double.IsFinite(result))
                    {
                        return Reply.Error(RedisErrors.FloatOverflow);
                    }

                    byte[] text = Encoding.ASCII.GetBytes(NumberText.FormatDouble(result));
                    Put(a[0], new Item { Text = text, ExpiresAt = item?.ExpiresAt ?? 0 });
                    return Reply.BulkOf(text);
                }

            case Op.Del:
                return Reply.Int(a.Count(k => Get(k) is not null && _items.Remove(K(k))));
            case Op.Rename or Op.RenameNx:
                {
                    bool nx = call.Op == Op.RenameNx;
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Error(RedisErrors.NoSuchKey);
                    }

                    if (K(a[0]) == K(a[1]))
                    {
                        return nx ? Reply.Int(0) : Reply.Ok;
                    }

                    if (nx && Get(a[1]) is not null)
                    {
                        return Reply.Int(0);
                    }

                    _items.Remove(K(a[0]));
                    Put(a[1], item.Clone());
                    return nx ? Reply.Int(1) : Reply.Ok;
                }

            case Op.Copy:
                {
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Int(0);
                    }

                    if (K(a[0]) == K(a[1]))
                    {
                        return Reply.Error("ERR source and destination objects are the same");
                    }

                    if (Get(a[1]) is not null && (call.Flags & OpFlags.Replace) == 0)
                    {
                        return Reply.Int(0);
                    }

                    Put(a[1], item.Clone());
                    return Reply.Int(1);
                }

            case Op.FlushAll:
                _items.Clear();
                return Reply.Ok;
            case Op.Expire:
                {
                    var item = Get(a[0]);
                    if (item is null)
                    {
                        return Reply.Int(0);
                    }

                    long current = item.ExpiresAt == 0 ? -1 : item.ExpiresAt;
                    var f = call.Flags;
                    if (((f & OpFlags.Nx) != 0 && current != -1) || ((f & OpFlags.Xx) != 0 && current == -1)
                        || ((f & OpFlags.Gt) != 0 && (current == -1 || call.Number <= current)) || ((f & OpFlags.Lt) != 0 && current != -1 && call.Number >= current))
                    {
                        return Reply.Int(0);
                    }

                    if (call.Number <= _now)
                    {
                        _items.Remove(K(a[0]));
                    }
                    else
                    {
                        item.ExpiresAt = call.Number;
                        item.Version = _index;
                    }

                    return Reply.Int(1);
                }

            case Op.Persist:
                {
                    var item = Get(a[0]);
                    if (item is null || item.ExpiresAt == 0)
                    {
                        return Reply.Int(0);
                    }

                    item.ExpiresAt = 0;
                    item.Version = _index;
                    return Reply.Int(1);
                }

            case Op.HSet or Op.HSetNx or Op.HDel or Op.HIncrBy or Op.HIncrByFloat:
                return HashWrite(call);
            case Op.ExpireKeys:
                {
                    long t = Math.Min(call.Number, _now);
                    int n = 0;
                    foreach (byte[] k in a)
                    {
                        if (_items.TryGetValue(K(k), out var item) && item.ExpiresAt != 0 && item.ExpiresAt <= t)
                        {
                            _items.Remove(K(k));
                            n++;
                        }
                    }

                    return Reply.Int(n);
                }

            default:
                throw new NotSupportedException(call.Op.ToString());
        }
    }

    private Reply HashWrite(Invocation call)
    {
        var a = call.Args;
        var item = Get(a[0]);
        if (item is { Hash: null })
        {
            return s_wrongType;
        }

        var h = item?.Hash ?? new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        Reply reply;
        switch (call.Op)
        {
            case Op.HSet:
                {
                    int added = 0;
                    for (int i = 1; i < a.Length; i += 2)
                    {
                        added += h.TryAdd(K(a[i]), a[i + 1]) ? 1 : 0;
                        h[K(a[i])] = a[i + 1];
                    }

                    reply = (call.Flags & OpFlags.ReplyOk) != 0 ? Reply.Ok : Reply.Int(added);
                    break;
                }

            case Op.HSetNx:
                if (!h.TryAdd(K(a[1]), a[2]))
                {
                    return Reply.Int(0);
                }

                reply = Reply.Int(1);
                break;
            case Op.HDel:
                {
                    int deleted = a.Skip(1).Count(f => h.Remove(K(f)));
                    if (deleted == 0)
                    {
                        return Reply.Int(0);
                    }

                    if (h.Count == 0)
                    {
                        _items.Remove(K(a[0]));
                        return Reply.Int(deleted);
                    }

                    reply = Reply.Int(deleted);
                    break;
                }

            case Op.HIncrBy:
                {
                    long current = 0;
                    if (h.TryGetValue(K(a[1]), out byte[]? text) && !NumberText.TryParseInt64(text, out current))
                    {
                        return Reply.Error(RedisErrors.HashNotInteger);
                    }

                    long result;
                    try
                    {
                        result = checked(current + call.Number);
                    }
                    catch (OverflowException)
                    {
                        return Reply.Error(RedisErrors.Overflow);
                    }

                    h[K(a[1])] = NumberText.Int64Bytes(result);
                    reply = Reply.Int(result);
                    break;
                }

            default:
                {
                    double current = 0;
                    if (h.TryGetValue(K(a[1]), out byte[]? text) && !NumberText.TryParseDouble(text, out current))
                    {
                        return Reply.Error(RedisErrors.HashNotFloat);
                    }

                    double result = current + double.Parse(Encoding.ASCII.GetString(a[2]), System.Globalization.CultureInfo.InvariantCulture);
                    if (!double.IsFinite(result))
                    {
                        return Reply.Error(RedisErrors.FloatOverflow);
                    }

                    byte[] formatted = Encoding.ASCII.GetBytes(NumberText.FormatDouble(result));
                    h[K(a[1])] = formatted;
                    reply = Reply.BulkOf(formatted);
                    break;
                }
        }

        Put(a[0], new Item { Hash = h, ExpiresAt = item?.ExpiresAt ?? 0 });
        return reply;
    }
}
