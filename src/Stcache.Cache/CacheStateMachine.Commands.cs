using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Stcache.Cache;

public sealed partial class CacheStateMachine
{
    private static readonly Reply s_typeString = Reply.Simple("string");
    private static readonly Reply s_typeHash = Reply.Simple("hash");
    private static readonly Reply s_typeNone = Reply.Simple("none");
    private static readonly Reply s_wrongType = Reply.Error(RedisErrors.WrongType);
    private static readonly Reply s_outOfMemory = Reply.Error(RedisErrors.OutOfMemory);

    private Reply Execute(Invocation invocation, ulong index, long time)
    {
        _now = time;
        _index = index;
        bool guarded = invocation.Op == Op.Batch && invocation.Batch.Length > 0 && invocation.Batch[0].Op == Op.IfVersions;
        if (guarded && !VersionsMatch(invocation.Batch[0].Args))
        {
            // WATCH: a watched key changed since it was watched; nothing is applied (EXEC answers a null).
            return Reply.Nil;
        }

        if (index != 0 && NeedsMemory(invocation) && !MakeRoom())
        {
            return s_outOfMemory;
        }

        if (invocation.Op == Op.Batch)
        {
            int first = guarded ? 1 : 0;
            var replies = new Reply[invocation.Batch.Length - first];
            for (int i = 0; i < replies.Length; i++)
            {
                replies[i] = Dispatch(invocation.Batch[first + i]);
            }

            return Reply.Array(replies);
        }

        return Dispatch(invocation);
    }

    /// <summary>Whether each key (args alternate key and 8-byte token) is as it was watched: a present key still has
    /// that version; an absent one (<see cref="WatchToken"/>'s mark) is still absent and no key of its deletion bucket
    /// was deleted since; 0, as entries written before the mark existed say, means absent now. Physical: a key past its
    /// expiry that no replicated expiry has removed yet keeps its version.</summary>
    private bool VersionsMatch(byte[][] a)
    {
        for (int i = 0; i + 1 < a.Length; i += 2)
        {
            if (a[i + 1].Length != 8)
            {
                return false;
            }

            ulong watched = BinaryPrimitives.ReadUInt64LittleEndian(a[i + 1]);
            int position = _keys.Find(a[i]);
            bool same = (watched & AbsentWatchMark) != 0
                ? position < 0 && _deletedAt[DeletionBucket(a[i])] == (watched & ~AbsentWatchMark)
                : (position >= 0 ? _keys.At(position).Version : 0) == watched;
            if (!same)
            {
                return false;
            }
        }

        return true;
    }

    // Redis's "denyoom" commands: those that may grow memory. Deletes, expiries and renames always run.
    private static bool NeedsMemory(Invocation invocation) => invocation.Op switch
    {
        Op.Set or Op.SetNx or Op.MSet or Op.MSetNx or Op.Append or Op.SetRange or Op.IncrBy or Op.IncrByFloat
            or Op.Copy or Op.HSet or Op.HSetNx or Op.HIncrBy or Op.HIncrByFloat => true,
        Op.Batch => invocation.Batch.Any(NeedsMemory),
        _ => false,
    };

    // SET, the common write, is answered before the general switch: that method's lambdas capture its arguments,
    // so entering it allocates their closure, once per applied entry.
    private Reply Dispatch(Invocation call) =>
        call.Op == Op.Set && call.Args.Length >= MinimumArgs(Op.Set) ? Set(call) : DispatchAny(call);

    private Reply DispatchAny(Invocation call)
    {
        byte[][] a = call.Args;
        if (a.Length < MinimumArgs(call.Op))
        {
            return Reply.Error("ERR invalid operation arguments");
        }

        return call.Op switch
        {
            Op.Get => Get(a[0]),
            Op.MGet => Reply.Array(a.Select(key => Lookup(key) is { IsString: true } entry ? Reply.BulkOf(entry.Text) : Reply.Nil).ToArray()),
            Op.StrLen => StringOp(a[0], entry => Reply.Int(entry is null ? 0 : entry.Text.Length)),
            Op.GetRange => GetRange(a[0], Int(a[1]), Int(a[2])),
            Op.Exists or Op.Touch => Reply.Int(a.Count(key => Lookup(key) is not null)),
            Op.Type => Lookup(a[0]) switch
            {
                null => s_typeNone,
                { IsString: true } => s_typeString,
                _ => s_typeHash,
            },
            Op.Keys => Keys(a[0]),
            Op.Scan => Scan(call),
            Op.RandomKey => RandomKey(),
            Op.DbSize => Reply.Int(_keys.Count - _volatile.Count(position => _keys.At(position).ExpiresAtUnixMs <= _now)),
            Op.Ttl or Op.PTtl or Op.ExpireTime or Op.PExpireTime => Ttl(call.Op, a[0]),
            Op.HGet => HashOp(a[0], hash => Reply.BulkOrNil(hash?.Fields.GetValueOrDefault(a[1]))),
            Op.HMGet => HashOp(a[0], hash => Reply.Array(a.Skip(1).Select(field => Reply.BulkOrNil(hash?.Fields.GetValueOrDefault(field))).ToArray())),
            Op.HGetAll => HashOp(a[0], hash => Reply.Map(hash is null ? [] : hash.SortedFields().SelectMany(field => new[] { Reply.BulkOf(field), Reply.BulkOf(hash.Fields[field]) }).ToArray())),
            Op.HExists => HashOp(a[0], hash => Reply.Int(hash?.Fields.ContainsKey(a[1]) == true ? 1 : 0)),
            Op.HLen => HashOp(a[0], hash => Reply.Int(hash?.Fields.Count ?? 0)),
            Op.HKeys => HashOp(a[0], hash => Reply.Array(hash is null ? [] : hash.SortedFields().Select(Reply.BulkOf).ToArray())),
            Op.HVals => HashOp(a[0], hash => Reply.Array(hash is null ? [] : hash.SortedFields().Select(field => Reply.BulkOf(hash.Fields[field])).ToArray())),
            Op.HStrLen => HashOp(a[0], hash => Reply.Int(hash?.Fields.GetValueOrDefault(a[1])?.Length ?? 0)),
            _ when _index == 0 => Reply.Error("ERR a write cannot be served as a read"),
            Op.Set => Set(call),
            Op.SetNx => SetNx(a[0], a[1]),
            Op.GetEx => GetEx(call),
            Op.GetDel => GetDel(a[0]),
            Op.MSet => MSet(a, onlyIfNoneExist: false),
            Op.MSetNx => MSet(a, onlyIfNoneExist: true),
            Op.Append => Append(a[0], a[1]),
            Op.SetRange => SetRange(a[0], call.Number, a[1]),
            Op.IncrBy => IncrBy(a[0], call.Number),
            Op.IncrByFloat => IncrByFloat(a[0], a[1]),
            Op.Del => Del(a),
            Op.Rename => Rename(a[0], a[1], onlyIfAbsent: false),
            Op.RenameNx => Rename(a[0], a[1], onlyIfAbsent: true),
            Op.Copy => Copy(a[0], a[1], (call.Flags & OpFlags.Replace) != 0),
            Op.FlushAll => FlushAll(),
            Op.Expire => Expire(a[0], call.Number, call.Flags),
            Op.Persist => Persist(a[0]),
            Op.HSet => HSet(a, call.Flags),
            Op.HSetNx => HSetNx(a[0], a[1], a[2]),
            Op.HDel => HDel(a),
            Op.HIncrBy => HIncrBy(a[0], a[1], call.Number),
            Op.HIncrByFloat => HIncrByFloat(a[0], a[1], a[2]),
            Op.ExpireKeys => ExpireKeys(Math.Min(call.Number, _now), a),
            Op.Evict => Evict(a),
            Op.Access => Access(a),
            Op.MemoryPolicy => SetMemoryPolicy(call.Number, (EvictionPolicy)(ushort)call.Flags),
            _ => Reply.Error("ERR invalid operation"),
        };
    }

    private static int MinimumArgs(Op op) => op switch
    {
        Op.RandomKey or Op.DbSize or Op.FlushAll or Op.ExpireKeys or Op.Access or Op.MemoryPolicy or Op.Evict or Op.Batch
            or Op.Del or Op.Exists or Op.Touch or Op.MGet => 0,
        Op.GetRange or Op.Scan or Op.HSetNx or Op.HIncrByFloat => 3,
        Op.Set or Op.SetNx or Op.Append or Op.SetRange or Op.IncrByFloat or Op.Rename or Op.RenameNx or Op.Copy
            or Op.HGet or Op.HExists or Op.HStrLen or Op.HIncrBy or Op.HMGet or Op.HDel => 2,
        Op.HSet => 3,
        _ => 1,
    };

    private static long Int(byte[] text) => NumberText.TryParseInt64(text, out long value) ? value : 0;

    private Reply StringOp(byte[] key, Func<KeyEntry?, Reply> action)
    {
        var entry = Lookup(key);
        return entry is { IsString: false } ? s_wrongType : action(entry);
    }

    private Reply HashOp(byte[] key, Func<HashValue?, Reply> action)
    {
        var entry = Lookup(key);
        return entry is { IsString: true } ? s_wrongType : action(entry is null ? null : entry.Hash);
    }

    // ---- Strings ----

    private Reply Get(byte[] key) => StringOp(key, entry => entry is null ? Reply.Nil : Reply.BulkOf(entry.Text));

    private Reply GetRange(byte[] key, long start, long end) => StringOp(key, entry =>
    {
        ReadOnlySpan<byte> text = entry is null ? default : entry.Text;
        long length = text.Length;
        if (start < 0 && end < 0 && start > end)
        {
            return Reply.BulkOf(Array.Empty<byte>());
        }

        if (start < 0)
        {
            start = length + start;
        }

        if (end < 0)
        {
            end = length + end;
        }

        start = Math.Max(start, 0);
        end = Math.Max(end, 0);
        if (end >= length)
        {
            end = length - 1;
        }

        return start > end || length == 0 ? Reply.BulkOf(Array.Empty<byte>()) : Reply.BulkOf(text.Slice((int)start, (int)(end - start + 1)));
    });

    private Reply Set(Invocation call) => Set(call.Args[0], call.Args[1], call.Flags, call.Number);

    /// <summary>SET of an applied entry (<see cref="_index"/> is not 0), from its key and value as they are: the
    /// decoded command's arrays, or the entry's own bytes (<see cref="Apply"/>).</summary>
    private Reply Set(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, OpFlags flags, long number)
    {
        var current = LookupForWrite(key);
        Reply old = Reply.Nil;
        if ((flags & OpFlags.Get) != 0)
        {
            if (current is { IsString: false })
            {
                return s_wrongType;
            }

            old = current is null ? Reply.Nil : Reply.BulkOf(current.Text);
        }

        if (((flags & OpFlags.Nx) != 0 && current is not null) || ((flags & OpFlags.Xx) != 0 && current is null))
        {
            return (flags & OpFlags.Get) != 0 ? old : Reply.Nil;
        }

        long expiresAt = (flags & OpFlags.HasExpiry) != 0 ? number : 0;
        if (expiresAt != 0 && expiresAt <= _now)
        {
            // Already expired at the entry's time: the key is gone, as if set and expired at once.
            if (current is not null)
            {
                Remove(current);
            }
        }
        else
        {
            Store(key, value, expiresAt, (flags & OpFlags.KeepTtl) != 0, current);
        }

        return (flags & OpFlags.Get) != 0 ? old : Reply.Ok;
    }

    private Reply SetNx(byte[] key, byte[] value)
    {
        if (Lookup(key) is not null)
        {
            return Reply.Int(0);
        }

        Store(key, value, 0, keepTtl: false);
        return Reply.Int(1);
    }

    private Reply GetEx(Invocation call)
    {
        var entry = Lookup(call.Args[0]);
        if (entry is null)
        {
            return Reply.Nil;
        }

        if (!entry.IsString)
        {
            return s_wrongType;
        }

        var reply = Reply.BulkOf(entry.Text);
        if ((call.Flags & OpFlags.HasExpiry) != 0 && call.Number <= _now)
        {
            Remove(entry);
        }
        else if ((call.Flags & OpFlags.HasExpiry) != 0)
        {
            entry = Own(entry);
            SetExpiry(entry, call.Number);
            Changed(entry);
        }
        else if ((call.Flags & OpFlags.Persist) != 0 && entry.ExpiresAtUnixMs != 0)
        {
            entry = Own(entry);
            SetExpiry(entry, 0);
            Changed(entry);
        }

        return reply;
    }

    private Reply GetDel(byte[] key)
    {
        var entry = Lookup(key);
        if (entry is null)
        {
            return Reply.Nil;
        }

        if (!entry.IsString)
        {
            return s_wrongType;
        }

        var reply = Reply.BulkOf(entry.Text);
        Remove(entry);
        return reply;
    }

    private Reply MSet(byte[][] a, bool onlyIfNoneExist)
    {
        if (onlyIfNoneExist)
        {
            for (int i = 0; i < a.Length; i += 2)
            {
                if (Lookup(a[i]) is not null)
                {
                    return Reply.Int(0);
                }
            }
        }

        for (int i = 0; i + 1 < a.Length; i += 2)
        {
            Lookup(a[i]);
            Store(a[i], a[i + 1], 0, keepTtl: false);
        }

        return onlyIfNoneExist ? Reply.Int(1) : Reply.Ok;
    }

    private Reply Append(byte[] key, byte[] suffix)
    {
        var entry = Lookup(key);
        if (entry is null)
        {
            Store(key, suffix, 0, keepTtl: false);
            return Reply.Int(suffix.Length);
        }

        if (!entry.IsString)
        {
            return s_wrongType;
        }

        if ((long)entry.Text.Length + suffix.Length > CacheCommand.ValueBytesMax)
        {
            return Reply.Error(RedisErrors.StringTooLong);
        }

        byte[] joined = new byte[entry.Text.Length + suffix.Length];
        entry.Text.CopyTo(joined);
        suffix.CopyTo(joined, entry.Text.Length);
        entry = Own(entry);
        SetValue(entry, joined);
        Changed(entry);
        return Reply.Int(joined.Length);
    }

    private Reply SetRange(byte[] key, long offset, byte[] value)
    {
        var entry = Lookup(key);
        if (entry is { IsString: false })
        {
            return s_wrongType;
        }

        ReadOnlySpan<byte> current = entry is null ? default : entry.Text;
        if (value.Length == 0)
        {
            return Reply.Int(current.Length);
        }

        var updated = new byte[Math.Max(current.Length, offset + value.Length)];
        current.CopyTo(updated);
        value.CopyTo(updated, offset);
        if (entry is null)
        {
            Store(key, updated, 0, keepTtl: false);
        }
        else
        {
            entry = Own(entry);
            SetValue(entry, updated);
            Changed(entry);
        }

        return Reply.Int(updated.Length);
    }

    private Reply IncrBy(byte[] key, long delta)
    {
        var entry = Lookup(key);
        if (entry is { IsString: false })
        {
            return s_wrongType;
        }

        long current = 0;
        if (entry is not null && !NumberText.TryParseInt64(entry.Text, out current))
        {
            return Reply.Error(RedisErrors.NotInteger);
        }

        if ((delta < 0 && current < 0 && delta < long.MinValue - current) || (delta > 0 && current > 0 && delta > long.MaxValue - current))
        {
            return Reply.Error(RedisErrors.Overflow);
        }

        long result = current + delta;
        StoreKeepingTtl(key, entry, NumberText.Int64Bytes(result));
        return Reply.Int(result);
    }

    private Reply IncrByFloat(byte[] key, byte[] incrementText)
    {
        var entry = Lookup(key);
        if (entry is { IsString: false })
        {
            return s_wrongType;
        }

        double current = 0;
        if ((entry is not null && !NumberText.TryParseDouble(entry.Text, out current)) || !NumberText.TryParseDouble(incrementText, out double increment))
        {
            return Reply.Error(RedisErrors.NotFloat);
        }

        double result = current + increment;
        if (!double.IsFinite(result))
        {
            return Reply.Error(RedisErrors.FloatOverflow);
        }

        byte[] text = Encoding.ASCII.GetBytes(NumberText.FormatDouble(result));
        StoreKeepingTtl(key, entry, text);
        return Reply.BulkOf(text);
    }

    private void StoreKeepingTtl(byte[] key, KeyEntry? entry, byte[] value)
    {
        if (entry is null)
        {
            Store(key, value, 0, keepTtl: false);
            return;
        }

        entry = Own(entry);
        SetValue(entry, value);
        Changed(entry);
    }

    // ---- Keys ----

    private Reply Del(byte[][] keys)
    {
        long deleted = 0;
        foreach (byte[] key in keys)
        {
            var entry = Lookup(key);
            if (entry is not null)
            {
                Remove(entry);
                deleted++;
            }
        }

        return Reply.Int(deleted);
    }

    private Reply Rename(byte[] source, byte[] target, bool onlyIfAbsent)
    {
        var entry = Lookup(source);
        if (entry is null)
        {
            return Reply.Error(RedisErrors.NoSuchKey);
        }

        if (source.AsSpan().SequenceEqual(target))
        {
            return onlyIfAbsent ? Reply.Int(0) : Reply.Ok;
        }

        var existing = Lookup(target);
        if (existing is not null)
        {
            if (onlyIfAbsent)
            {
                return Reply.Int(0);
            }

            Remove(existing);
        }

        // A removal (the target, or an expired target found by the lookup) may have moved the source's slot.
        entry = new KeyEntry(_keys, _keys.Find(source));

        object value = entry.CopyValue();
        long expiresAt = entry.ExpiresAtUnixMs;
        uint accessSeconds = entry.AccessSeconds;
        byte frequency = entry.Frequency;
        Remove(entry);
        var moved = Add(target, value);
        SetExpiry(moved, expiresAt);
        moved.AccessSeconds = accessSeconds;
        moved.Frequency = frequency;
        return onlyIfAbsent ? Reply.Int(1) : Reply.Ok;
    }

    private Reply Copy(byte[] source, byte[] target, bool replace)
    {
        var entry = Lookup(source);
        if (entry is null)
        {
            return Reply.Int(0);
        }

        if (source.AsSpan().SequenceEqual(target))
        {
            return Reply.Error("ERR source and destination objects are the same");
        }

        var existing = Lookup(target);
        if (existing is not null)
        {
            if (!replace)
            {
                return Reply.Int(0);
            }

            Remove(existing);
        }

        entry = new KeyEntry(_keys, _keys.Find(source));

        object value = entry.CopyValue();
        long expiresAt = entry.ExpiresAtUnixMs;
        var copy = Add(target, value);
        SetExpiry(copy, expiresAt);
        return Reply.Int(1);
    }

    private Reply FlushAll()
    {
        while (_keys.Count > 0)
        {
            Remove(new KeyEntry(_keys, _keys.Count - 1));
        }

        return Reply.Ok;
    }

    private bool Visible(KeyEntry entry) => entry.ExpiresAtUnixMs == 0 || entry.ExpiresAtUnixMs > _now;

    private Reply Keys(byte[] pattern)
    {
        bool all = pattern is [(byte)'*'];
        var found = new List<Reply>();
        for (int i = 0; i < _keys.Count; i++)
        {
            var entry = new KeyEntry(_keys, i);
            if (Visible(entry) && (all || Glob.IsMatch(pattern, entry.Key)))
            {
                found.Add(Reply.BulkOf(entry.Key));
            }
        }

        return Reply.Array(found.ToArray());
    }

    /// <summary>Where a key sits in SCAN's order: its stable hash, never 0 (0 is the start and end cursor).</summary>
    public static ulong ScanPosition(ReadOnlySpan<byte> key) => Math.Max(1, ByteStringComparer.StableHash(key));

    // SCAN walks keys in order of a stable hash, so a cursor means the same on every node and survives any change:
    // every key present for the whole scan is returned exactly once. Cost: O(keys) per call (see docs/CACHE.md).
    private Reply Scan(Invocation call)
    {
        ulong cursor = unchecked((ulong)Int(call.Args[0]));
        long count = Math.Max(1, call.Number);
        byte[] pattern = call.Args[1];
        byte[] type = call.Args[2];
        bool match = (call.Flags & OpFlags.WithMatch) != 0;
        bool typed = (call.Flags & OpFlags.WithType) != 0;

        // The smallest `count` positions at or after the cursor (all keys sharing the boundary position included).
        var positions = new SortedSet<ulong>();
        var atPosition = new Dictionary<ulong, List<KeyEntry>>();
        for (int i = 0; i < _keys.Count; i++)
        {
            var entry = new KeyEntry(_keys, i);
            ulong position = ScanPosition(entry.Key);
            if (position < cursor || (positions.Count >= count && position > positions.Max))
            {
                continue;
            }

            if (!atPosition.TryGetValue(position, out var list))
            {
                atPosition[position] = list = [];
                positions.Add(position);
            }

            list.Add(entry);
            if (positions.Count > count)
            {
                atPosition.Remove(positions.Max);
                positions.Remove(positions.Max);
            }
        }

        ulong next = 0;
        if (positions.Count >= count && positions.Count > 0)
        {
            next = positions.Max == ulong.MaxValue ? 0 : positions.Max + 1;
        }

        var keys = new List<Reply>();
        foreach (ulong position in positions)
        {
            var list = atPosition[position];
            list.Sort((x, y) => x.Key.SequenceCompareTo(y.Key));
            foreach (var entry in list)
            {
                if (!Visible(entry) || (match && !Glob.IsMatch(pattern, entry.Key)))
                {
                    continue;
                }

                if (typed && !Encoding.ASCII.GetString(type).Equals(entry.IsString ? "string" : "hash", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                keys.Add(Reply.BulkOf(entry.Key));
            }
        }

        return Reply.Array([Reply.BulkOf(next.ToString(CultureInfo.InvariantCulture)), Reply.Array(keys.ToArray())]);
    }

    // Deterministic given the state and the read: the read time and applied index seed the pick.
    private Reply RandomKey()
    {
        int total = _keys.Count;
        if (total == 0)
        {
            return Reply.Nil;
        }

        ulong seed = ByteStringComparer.Mix(unchecked((ulong)_now) ^ ((ulong)_appliedIndex * 0x9E3779B97F4A7C15UL));
        int start = (int)(seed % (ulong)total);
        for (int i = 0; i < total; i++)
        {
            var entry = new KeyEntry(_keys, (start + i) % total);
            if (Visible(entry))
            {
                return Reply.BulkOf(entry.Key);
            }
        }

        return Reply.Nil;
    }

    private Reply Ttl(Op op, byte[] key)
    {
        if (!_keys.TryGetValue(key, out var entry) || !Visible(entry))
        {
            if (entry is not null)
            {
                Lookup(key);
            }

            return Reply.Int(-2);
        }

        if (entry.ExpiresAtUnixMs == 0)
        {
            return Reply.Int(-1);
        }

        long ms = op is Op.ExpireTime or Op.PExpireTime ? entry.ExpiresAtUnixMs : Math.Max(0, entry.ExpiresAtUnixMs - _now);
        return Reply.Int(op is Op.PTtl or Op.PExpireTime ? ms : (ms + 500) / 1000);
    }

    private Reply Expire(byte[] key, long when, OpFlags flags)
    {
        var entry = Lookup(key);
        if (entry is null)
        {
            return Reply.Int(0);
        }

        long current = entry.ExpiresAtUnixMs == 0 ? -1 : entry.ExpiresAtUnixMs;
        if (((flags & OpFlags.Nx) != 0 && current != -1)
            || ((flags & OpFlags.Xx) != 0 && current == -1)
            || ((flags & OpFlags.Gt) != 0 && (current == -1 || when <= current))
            || ((flags & OpFlags.Lt) != 0 && current != -1 && when >= current))
        {
            return Reply.Int(0);
        }

        if (when <= _now)
        {
            Remove(entry);
            return Reply.Int(1);
        }

        entry = Own(entry);
        SetExpiry(entry, when);
        Changed(entry);
        return Reply.Int(1);
    }

    private Reply Persist(byte[] key)
    {
        var entry = Lookup(key);
        if (entry is null || entry.ExpiresAtUnixMs == 0)
        {
            return Reply.Int(0);
        }

        entry = Own(entry);
        SetExpiry(entry, 0);
        Changed(entry);
        return Reply.Int(1);
    }

    // ---- Hashes ----

    private KeyEntry? HashForWrite(byte[] key, out bool wrongType)
    {
        var entry = Lookup(key);
        wrongType = entry is { IsString: true };
        return entry is null || wrongType ? null : Own(entry);
    }

    private KeyEntry NewHash(byte[] key) =>
        Add(key, new HashValue(new Dictionary<byte[], byte[]>(ByteStringComparer.Instance), 0));

    private void SetField(KeyEntry entry, byte[] field, byte[] value, out bool added)
    {
        var hash = entry.Hash;
        long before = Cost(entry);
        added = !hash.Fields.TryGetValue(field, out byte[]? old);
        hash.Bytes += added ? FieldOverheadBytes + field.Length + value.Length : value.Length - old!.Length;
        hash.Fields[field] = value;
        Interlocked.Add(ref _usedBytes, Cost(entry) - before);
    }

    private Reply HSet(byte[][] a, OpFlags flags)
    {
        var entry = HashForWrite(a[0], out bool wrongType);
        if (wrongType)
        {
            return s_wrongType;
        }

        entry ??= NewHash(a[0]);
        long added = 0;
        for (int i = 1; i + 1 < a.Length; i += 2)
        {
            SetField(entry, a[i], a[i + 1], out bool isNew);
            added += isNew ? 1 : 0;
        }

        Changed(entry);
        return (flags & OpFlags.ReplyOk) != 0 ? Reply.Ok : Reply.Int(added);
    }

    private Reply HSetNx(byte[] key, byte[] field, byte[] value)
    {
        var existing = Lookup(key);
        if (existing is { IsString: true })
        {
            return s_wrongType;
        }

        if (existing is not null && existing.Hash.Fields.ContainsKey(field))
        {
            return Reply.Int(0);
        }

        var entry = existing is null ? NewHash(key) : Own(existing);
        SetField(entry, field, value, out _);
        Changed(entry);
        return Reply.Int(1);
    }

    private Reply HDel(byte[][] a)
    {
        var existing = Lookup(a[0]);
        if (existing is null)
        {
            return Reply.Int(0);
        }

        if (existing.IsString)
        {
            return s_wrongType;
        }

        var entry = Own(existing);
        long deleted = 0;
        long before = Cost(entry);
        for (int i = 1; i < a.Length; i++)
        {
            if (entry.Hash.Fields.Remove(a[i], out byte[]? old))
            {
                entry.Hash.Bytes -= FieldOverheadBytes + a[i].Length + old.Length;
                deleted++;
            }
        }

        Interlocked.Add(ref _usedBytes, Cost(entry) - before);
        if (entry.Hash.Fields.Count == 0)
        {
            Remove(entry);
        }
        else if (deleted > 0)
        {
            Changed(entry);
        }

        return Reply.Int(deleted);
    }

    private Reply HIncrBy(byte[] key, byte[] field, long delta)
    {
        var existing = Lookup(key);
        if (existing is { IsString: true })
        {
            return s_wrongType;
        }

        long current = 0;
        if (existing is not null && existing.Hash.Fields.TryGetValue(field, out byte[]? text) && !NumberText.TryParseInt64(text, out current))
        {
            return Reply.Error(RedisErrors.HashNotInteger);
        }

        if ((delta < 0 && current < 0 && delta < long.MinValue - current) || (delta > 0 && current > 0 && delta > long.MaxValue - current))
        {
            return Reply.Error(RedisErrors.Overflow);
        }

        long result = current + delta;
        var entry = existing is null ? NewHash(key) : Own(existing);
        SetField(entry, field, NumberText.Int64Bytes(result), out _);
        Changed(entry);
        return Reply.Int(result);
    }

    private Reply HIncrByFloat(byte[] key, byte[] field, byte[] incrementText)
    {
        var existing = Lookup(key);
        if (existing is { IsString: true })
        {
            return s_wrongType;
        }

        double current = 0;
        if (existing is not null && existing.Hash.Fields.TryGetValue(field, out byte[]? text) && !NumberText.TryParseDouble(text, out current))
        {
            return Reply.Error(RedisErrors.HashNotFloat);
        }

        if (!NumberText.TryParseDouble(incrementText, out double increment))
        {
            return Reply.Error(RedisErrors.NotFloat);
        }

        double result = current + increment;
        if (!double.IsFinite(result))
        {
            return Reply.Error(RedisErrors.FloatOverflow);
        }

        byte[] formatted = Encoding.ASCII.GetBytes(NumberText.FormatDouble(result));
        var entry = existing is null ? NewHash(key) : Own(existing);
        SetField(entry, field, formatted, out _);
        Changed(entry);
        return Reply.BulkOf(formatted);
    }

    // ---- Leader decisions: expiry, eviction, access, memory policy ----

    private Reply ExpireKeys(long expiredAt, byte[][] keys)
    {
        long deleted = 0;
        foreach (byte[] key in keys)
        {
            if (_keys.TryGetValue(key, out var entry) && entry.ExpiresAtUnixMs != 0 && entry.ExpiresAtUnixMs <= expiredAt)
            {
                Remove(entry);
                Interlocked.Increment(ref _expiredKeys);
                deleted++;
            }
        }

        return Reply.Int(deleted);
    }

    private Reply Evict(byte[][] a)
    {
        long deleted = 0;
        for (int i = 0; i + 1 < a.Length; i += 2)
        {
            if (a[i + 1].Length == 8 && _keys.TryGetValue(a[i], out var entry) && entry.Version == BinaryPrimitives.ReadUInt64LittleEndian(a[i + 1]))
            {
                Remove(entry);
                Interlocked.Increment(ref _evictedKeys);
                deleted++;
            }
        }

        return Reply.Int(deleted);
    }

    private Reply Access(byte[][] keys)
    {
        long touched = 0;
        foreach (byte[] key in keys)
        {
            var entry = Lookup(key);
            if (entry is not null)
            {
                Touch(Own(entry));
                touched++;
            }
        }

        return Reply.Int(touched);
    }

    private Reply SetMemoryPolicy(long maxMemoryBytes, EvictionPolicy policy)
    {
        if (maxMemoryBytes < 0 || !Enum.IsDefined(policy))
        {
            return Reply.Error("ERR invalid memory policy");
        }

        Interlocked.Exchange(ref _maxMemoryBytes, maxMemoryBytes);
        _policy = policy;
        return Reply.Ok;
    }

    /// <summary>Before a write that may grow memory: evict until used memory is within the limit (Redis's
    /// performEvictions), or report that the write must be refused. So used memory exceeds the limit by at most
    /// the last write.</summary>
    private bool MakeRoom()
    {
        long limit = _maxMemoryBytes;
        if (limit == 0 || _usedBytes <= limit)
        {
            return true;
        }

        if (_policy == EvictionPolicy.NoEviction)
        {
            return false;
        }

        ulong round = 0;
        while (_usedBytes > limit)
        {
            var victim = ChooseVictim(_index, round++);
            if (victim is null)
            {
                return false;
            }

            Remove(victim);
            Interlocked.Increment(ref _evictedKeys);
        }

        return true;
    }

    /// <summary>Samples <see cref="EvictionSamples"/> candidates with a generator seeded by (seed, round) and returns
    /// the best victim for the policy, or null when there is no candidate.</summary>
    private KeyEntry? ChooseVictim(ulong seed, ulong round)
    {
        bool volatileOnly = _policy.IsVolatileOnly();
        int poolCount = volatileOnly ? _volatile.Count : _keys.Count;
        if (poolCount == 0)
        {
            return null;
        }

        KeyEntry? best = null;
        double bestScore = double.MinValue;
        ulong state = ByteStringComparer.Mix(seed * 0x9E3779B97F4A7C15UL ^ round);
        uint nowSeconds = NowSeconds;
        for (int i = 0; i < EvictionSamples; i++)
        {
            state = ByteStringComparer.Mix(state + 0x9E3779B97F4A7C15UL);
            int pick = (int)(state % (ulong)poolCount);
            var candidate = new KeyEntry(_keys, volatileOnly ? _volatile[pick] : pick);
            double score = _policy switch
            {
                EvictionPolicy.AllKeysLru or EvictionPolicy.VolatileLru => nowSeconds - (double)candidate.AccessSeconds,
                EvictionPolicy.AllKeysLfu or EvictionPolicy.VolatileLfu => 255 - DecayedFrequency(candidate, nowSeconds),
                EvictionPolicy.VolatileTtl => -(double)candidate.ExpiresAtUnixMs,
                _ => 0,
            };
            if (best is null || score > bestScore)
            {
                best = candidate;
                bestScore = score;
            }
        }

        return best;
    }

    /// <summary>For the leader: choose victims (key and version) that would bring used memory down to
    /// <paramref name="targetBytes"/>, to propose as one <see cref="WriteCommand.Evict"/> entry ahead of need.
    /// Deterministic in (state, <paramref name="seed"/>); changes nothing.</summary>
    public IReadOnlyList<(byte[] Key, ulong Version)> ChooseEvictionVictims(long targetBytes, ulong seed, int maxVictims)
    {
        lock (_lock)
        {
            var victims = new Dictionary<byte[], ulong>(ByteStringComparer.Instance);
            long projected = _usedBytes;
            ulong round = 0;
            while (projected > targetBytes && victims.Count < maxVictims && round < (ulong)maxVictims * 4)
            {
                var victim = ChooseVictim(seed, round++);
                if (victim is null)
                {
                    break;
                }

                if (victims.TryAdd(victim.KeyArray(), victim.Version))
                {
                    projected -= Cost(victim);
                }
            }

            return victims.Select(pair => (pair.Key, pair.Value)).ToArray();
        }
    }

    /// <summary>For the leader's active expiry (Redis's active expire cycle): samples keys that have an expiry,
    /// 20 per round, and repeats while more than a tenth of a round was expired (Redis 7's acceptable stale share
    /// at the default effort), examining at most <paramref name="maxExamined"/> keys. Returns the expired keys to propose with
    /// <see cref="WriteCommand.ExpireKeys"/>. Bounded work; changes nothing.</summary>
    public IReadOnlyList<byte[]> SampleExpiredKeys(long nowUnixMs, ulong seed, int maxExamined = 200)
    {
        const int perRound = 20;
        lock (_lock)
        {
            var expired = new Dictionary<byte[], bool>(ByteStringComparer.Instance);
            int examined = 0;
            ulong state = ByteStringComparer.Mix(seed);
            while (examined < maxExamined && _volatile.Count > 0)
            {
                int found = 0;
                int round = Math.Min(perRound, _volatile.Count);
                for (int i = 0; i < round && examined < maxExamined; i++, examined++)
                {
                    state = ByteStringComparer.Mix(state + 0x9E3779B97F4A7C15UL);
                    var entry = new KeyEntry(_keys, _volatile[(int)(state % (ulong)_volatile.Count)]);
                    if (entry.ExpiresAtUnixMs <= nowUnixMs && expired.TryAdd(entry.KeyArray(), true))
                    {
                        found++;
                    }
                }

                if (found * 10 <= round)
                {
                    break;
                }
            }

            return expired.Keys.ToArray();
        }
    }
}
