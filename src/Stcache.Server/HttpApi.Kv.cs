using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Stcache.Cache;

namespace Stcache.Server;

internal sealed partial class HttpApi
{
    // About 100 years: keeps now + ttl far from overflow.
    private const long MaxTtlSeconds = 3_153_600_000;

    private const string OctetStream = "application/octet-stream";
    private const string JsonUtf8 = "application/json; charset=utf-8";

    // The method tag of stcache.http.request, built once.
    private static readonly KeyValuePair<string, object?> s_getTag = new("method", HttpMethods.Get);
    private static readonly KeyValuePair<string, object?> s_putTag = new("method", HttpMethods.Put);
    private static readonly KeyValuePair<string, object?> s_postTag = new("method", HttpMethods.Post);
    private static readonly KeyValuePair<string, object?> s_deleteTag = new("method", HttpMethods.Delete);

    private static readonly ErrorResult s_keyNotFound = new(StatusCodes.Status404NotFound, new ErrorView("key not found", "none", null));

    /// <summary>
    /// <c>/v1/kv</c>: a thin adapter over <see cref="CommandService"/> (reads at the asked consistency, writes
    /// proposed on or forwarded to the leader), mapping its typed outcomes to HTTP statuses. The handlers are plain
    /// request delegates: no parameter binding, no result object and no wrapping middleware per request; each
    /// writes its answer with its length and records <c>stcache.http.request</c> itself. A stale read of a present
    /// key completes without an await.
    /// </summary>
    private void MapKv(RouteGroupBuilder v1)
    {
        // Served by ServeKvAsync before routing; mapped all the same, so that routing answers another method on
        // these paths with 405, and "/v1/kv" without a key reaches the handlers' checks.
        v1.MapGet("/kv/{**key}", context => GetKeyAsync(context, KeyOf(context)));
        v1.MapPut("/kv/{**key}", context => PutKeyAsync(context, KeyOf(context).AsMemory()));
        v1.MapPost("/kv/{**key}", context => PutKeyAsync(context, KeyOf(context).AsMemory()));
        v1.MapDelete("/kv/{**key}", context => DeleteKeyAsync(context, KeyOf(context)));
    }

    /// <summary>
    /// Before routing (from the first middleware): <c>GET</c>, <c>PUT</c>, <c>POST</c> and <c>DELETE</c> of
    /// <c>/v1/kv/{key}</c> go straight to their handler, without the route match and its route-value dictionary per
    /// request; null for anything else, which goes on to routing. The key is the rest of the path, as the catch-all
    /// route value was (decoded, a literal <c>%2F</c> kept; the prefix matched without regard to case, as routing
    /// matches). A PUT's key stays a part of the path: it is written into the entry and the answer, never kept.
    /// </summary>
    private Task? ServeKv(HttpContext context)
    {
        const string Prefix = "/v1/kv/";
        string? path = context.Request.Path.Value;
        if (path is null || !path.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        string method = context.Request.Method;
        if (HttpMethods.IsPut(method) || HttpMethods.IsPost(method))
        {
            return PutKeyAsync(context, path.AsMemory(Prefix.Length));
        }

        if (HttpMethods.IsGet(method))
        {
            return GetKeyAsync(context, path[Prefix.Length..]);
        }

        return HttpMethods.IsDelete(method) ? DeleteKeyAsync(context, path[Prefix.Length..]) : null;
    }

    private Task GetKeyAsync(HttpContext context, string key)
    {
        long started = Stopwatch.GetTimestamp();
        if (KeyError(key) is { } keyError)
        {
            return Finish(context, started, s_getTag, keyError.ExecuteAsync(context));
        }

        if (ConsistencyOf(ConsistencyText(context.Request)) is not { } consistency)
        {
            return Finish(context, started, s_getTag, ConsistencyError.ExecuteAsync(context));
        }

        // A stale read needs no coordination: this node's state at its last applied log time (docs/CACHE.md).
        return consistency == ReadConsistency.Stale
            ? Finish(context, started, s_getTag, AnswerEntryAsync(context, key, service.ReadTime(ReadOutcome.Ok)))
            : GetConfirmedAsync(context, key, consistency, started);
    }

    /// <summary>A linearizable or lease read: after its read barrier (one confirmation round shared by every read
    /// waiting at that moment, HTTP and RESP alike). While a leader is known the read waits in a lane of its batch as
    /// a pooled <see cref="ConfirmedGet"/>, answered on the lane's work item: no async frame per read.</summary>
    private Task GetConfirmedAsync(HttpContext context, string key, ReadConsistency consistency, long started)
    {
        var read = ConfirmedGet.Rent(this, context, key, started);
        var answered = read.Answered;
        if (service.TryJoinLane(consistency, read))
        {
            return answered;
        }

        read.Abandon();
        return GetAfterBarrierAsync(context, key, consistency, started);
    }

    /// <summary>The read's barrier waits for a leader first (<see cref="CommandService.ReadBarrierAsync"/>).</summary>
    private async Task GetAfterBarrierAsync(HttpContext context, string key, ReadConsistency consistency, long started)
    {
        var barrier = await service.ReadBarrierAsync(consistency, context.RequestAborted);
        await AnswerConfirmedAsync(context, key, barrier);
        Record(context, started, s_getTag);
    }

    private Task AnswerConfirmedAsync(HttpContext context, string key, ReadOutcome barrier) => barrier.Succeeded
        ? AnswerEntryAsync(context, key, service.ReadTime(barrier))
        : Error(StatusCodes.Status503ServiceUnavailable, barrier.Detail, "none").ExecuteAsync(context);

    /// <summary>
    /// A linearizable (or lease) GET waiting in a lane: resumed with its round's outcome on the lane's work item, it
    /// writes the answer there and completes the task the request's handler returned. Pooled: rented as the read
    /// joins, given back before its task completes (the request, and the connection's next one, may run on as soon
    /// as it does). The answer runs in the request's execution context, as the continuation of an await would.
    /// </summary>
    private sealed class ConfirmedGet : ReadBatcher.LaneRead
    {
        private static readonly ContextCallback s_answer = static state => ((ConfirmedGet)state!).Answer();

        private HttpApi? _api;
        private HttpContext? _context;
        private string _key = string.Empty;
        private long _started;
        private ExecutionContext? _executionContext;
        private ReadOutcome _outcome;
        private AsyncTaskMethodBuilder _answered;

        /// <summary>Completes once the answer is written (the handler's task).</summary>
        public Task Answered => _answered.Task;

        public static ConfirmedGet Rent(HttpApi api, HttpContext context, string key, long started)
        {
            var read = SharedPool<ConfirmedGet>.Rent();
            read._api = api;
            read._context = context;
            read._key = key;
            read._started = started;
            read._executionContext = ExecutionContext.Capture();
            read._answered = AsyncTaskMethodBuilder.Create();
            _ = read._answered.Task;
            return read;
        }

        /// <summary>Not joined (no leader known): back to the pool, its task never completed nor handed out.</summary>
        public void Abandon() => Return();

        public override void Resume(ReadOutcome outcome)
        {
            _outcome = outcome;
            RunIn(_executionContext, s_answer, this);
        }

        private void Answer()
        {
            var api = _api!;
            var context = _context!;
            string key = _key;
            long started = _started;
            var outcome = _outcome;
            var answered = _answered;
            Return();
            try
            {
                CompleteWith(Finish(context, started, s_getTag, api.AnswerConfirmedAsync(context, key, outcome)), answered);
            }
            catch (Exception e)
            {
                answered.SetException(e);
            }
        }

        private void Return()
        {
            _api = null;
            _context = null;
            _key = string.Empty;
            _executionContext = null;
            _outcome = default;
            _answered = default;
            SharedPool<ConfirmedGet>.Return(this);
        }
    }

    /// <summary>Runs a pooled waiter's answer in the request's execution context, as the continuation of an await would
    /// run (here, when none was captured).</summary>
    private static void RunIn(ExecutionContext? context, ContextCallback answer, object waiter)
    {
        if (context is not null)
        {
            ExecutionContext.Run(context, answer, waiter);
        }
        else
        {
            answer(waiter);
        }
    }

    /// <summary>Completes a pooled waiter's handler task with <paramref name="rest"/>: at once when it already
    /// completed (nearly always), else when it does.</summary>
    private static void CompleteWith(Task rest, AsyncTaskMethodBuilder answered)
    {
        if (rest.IsCompletedSuccessfully)
        {
            answered.SetResult();
            return;
        }

        _ = CompleteAsync(rest, answered);

        static async Task CompleteAsync(Task rest, AsyncTaskMethodBuilder answered)
        {
            try
            {
                await rest.ConfigureAwait(false);
                answered.SetResult();
            }
            catch (Exception e)
            {
                answered.SetException(e);
            }
        }
    }

    /// <summary>A bounded pool of a handler's waiting objects, shared by every thread: one is rented on the request's
    /// thread and given back on whichever thread resumed it.</summary>
    private static class SharedPool<T>
        where T : class, new()
    {
        private const int PooledMax = 256;

        private static readonly ConcurrentQueue<T> s_pool = new();
        private static int s_pooled;

        public static T Rent()
        {
            if (s_pool.TryDequeue(out var pooled))
            {
                Interlocked.Decrement(ref s_pooled);
                return pooled;
            }

            return new T();
        }

        public static void Return(T item)
        {
            if (Interlocked.Increment(ref s_pooled) <= PooledMax)
            {
                s_pool.Enqueue(item);
            }
            else
            {
                Interlocked.Decrement(ref s_pooled);
            }
        }
    }

    /// <summary>The key's value as the body, its version (and expiry) in headers; 404 if it is not visible at
    /// <paramref name="readTime"/>.</summary>
    private Task AnswerEntryAsync(HttpContext context, string key, long readTime)
    {
        if (!host.Cache.TryGet(key, out var entry, readTime))
        {
            return s_keyNotFound.ExecuteAsync(context);
        }

        var response = context.Response;
        if (entry.ExpiresAtUnixMs != 0)
        {
            // The stamped expiry (Unix ms), the same on every node (docs/CACHE.md).
            response.Headers[ExpiresAtHeader] = entry.ExpiresAtUnixMs.ToString(CultureInfo.InvariantCulture);
        }

        response.Headers[VersionHeader] = entry.Version.ToString(CultureInfo.InvariantCulture);
        return WriteBodyAsync(response, entry.Value, OctetStream);
    }

    /// <summary>
    /// A PUT (or POST) in two parts: <see cref="PreparePutAsync"/> checks the request and reads the body (its awaits
    /// complete at once when the body is already in, as a small one nearly always is), then
    /// <see cref="ProposePutAsync"/> proposes the write and waits for it. Only the second suspends, and its frame holds
    /// only what the wait needs, not the request's parsing state (about 100 bytes less per PUT). A body whose length
    /// is known is read straight into the write's entry (<see cref="CacheCommand.SetFrame"/>: no command object, no
    /// buffer to copy it from), and a body the client sends too slowly or malformed is refused here as the first
    /// middleware refuses it for other paths.
    /// </summary>
    private Task PutKeyAsync(HttpContext context, ReadOnlyMemory<char> key)
    {
        long started = Stopwatch.GetTimestamp();
        var prepared = PreparePutAsync(context, key, started);
        if (!prepared.IsCompletedSuccessfully)
        {
            return ProposeAfterBodyAsync(context, key, prepared, started);
        }

        var requests = prepared.Result;
        return requests is null ? Task.CompletedTask : ProposePutAsync(context, key, requests, started);
    }

    /// <summary>A PUT whose body was still on its way.</summary>
    private async Task ProposeAfterBodyAsync(HttpContext context, ReadOnlyMemory<char> key, ValueTask<WriteRequest[]?> prepared, long started)
    {
        var requests = await prepared;
        if (requests is not null)
        {
            await ProposePutAsync(context, key, requests, started);
        }
    }

    /// <summary>Checks a PUT and reads its body: its one write request, ready to propose. Null: the PUT was refused,
    /// answered and recorded here; an accepted one is recorded by <see cref="ProposePutAsync"/>.</summary>
    private async ValueTask<WriteRequest[]?> PreparePutAsync(HttpContext context, ReadOnlyMemory<char> key, long started)
    {
        bool handedOff = false;
        try
        {
            ulong? prevVersion = null;
            string? prevValue = null;
            long? ttl = null;
            if (context.Request.QueryString.HasValue)
            {
                var query = context.Request.Query;
                if (!TryParseQuery(query, "prevVersion", out prevVersion) || !TryParseQuery(query, "ttl", out ttl))
                {
                    await Error(StatusCodes.Status400BadRequest, "prevVersion and ttl must be whole numbers", "not-applied").ExecuteAsync(context);
                    return null;
                }

                prevValue = query["prevValue"];
            }

            if (ttl is <= 0 or > MaxTtlSeconds)
            {
                await Error(StatusCodes.Status400BadRequest, $"ttl must be a whole number of seconds from 1 to {MaxTtlSeconds}", "not-applied").ExecuteAsync(context);
                return null;
            }

            long? length = context.Request.ContentLength;
            if (length > options.ValueBytesMax)
            {
                await ValueTooLarge().ExecuteAsync(context);
                return null;
            }

            bool both = prevVersion is not null && prevValue is not null;
            byte[] expected = prevValue is null ? [] : Encoding.UTF8.GetBytes(prevValue);
            var compare = prevVersion is not null ? CompareKind.Version : prevValue is not null ? CompareKind.Value : CompareKind.None;
            CacheCommand.Frame frame = default;
            byte[]? body = null;
            try
            {
                if (length is > 0 and <= ExactBodyBytesMax && !both
                    && CacheCommand.Validate(CommandKind.Set, key.Span, (int)length.Value, expected.Length) is null)
                {
                    // A body that ends before its length is a client error Kestrel throws for (refused below).
                    frame = CacheCommand.SetFrame(key.Span, (int)length.Value, ttl is not null, compare, prevVersion ?? 0, expected);
                    await context.Request.Body.ReadExactlyAsync(frame.Value, context.RequestAborted);
                }
                else
                {
                    body = await ReadBodyAsync(context);
                }
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await ValueTooLarge().ExecuteAsync(context);
                return null;
            }

            if (both)
            {
                await Error(StatusCodes.Status400BadRequest, "give prevVersion or prevValue, not both", "not-applied").ExecuteAsync(context);
                return null;
            }

            if (body is not null)
            {
                if (WriteProblem(CommandKind.Set, key.Span, body.Length, expected.Length) is { } problem)
                {
                    await problem.ExecuteAsync(context);
                    return null;
                }

                frame = CacheCommand.SetFrame(key.Span, body.Length, ttl is not null, compare, prevVersion ?? 0, expected);
                body.CopyTo(frame.Value);
            }

            handedOff = true;
            return [WriteRequest.Of(frame, ttl * 1000 ?? 0)];
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            await RefuseAsync(context, e);
            return null;
        }
        finally
        {
            if (!handedOff)
            {
                RecordPut(context, started);
            }
        }
    }

    /// <summary>Proposes a checked PUT (on this node when it leads, else forwarded) and answers it. On the leader the
    /// PUT waits for its batch as a pooled <see cref="ProposedPut"/>, not in an async frame of its own (the largest
    /// object a PUT allocated).</summary>
    private Task ProposePutAsync(HttpContext context, ReadOnlyMemory<char> key, WriteRequest[] requests, long started)
    {
        CommandService.WritesHere here;
        try
        {
            if (!service.TryStartHere(requests, context.RequestAborted, out here))
            {
                return ForwardPutAsync(context, key, requests, started);
            }
        }
        catch
        {
            RecordPut(context, started);
            throw;
        }

        return ProposedPut.Start(this, context, key, here, started);
    }

    /// <summary>A PUT this node does not lead for: forwarded to the leader, or waiting for one.</summary>
    private async Task ForwardPutAsync(HttpContext context, ReadOnlyMemory<char> key, WriteRequest[] requests, long started)
    {
        try
        {
            var outcomes = await service.WriteBatchAsync(requests, context.RequestAborted);
            await AnswerWriteAsync(context, key.Span, outcomes[0]);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            await RefuseAsync(context, e);
        }
        finally
        {
            RecordPut(context, started);
        }
    }

    /// <summary>The rest of a proposed PUT that could not finish at once: its outcomes retried on a new leader, or an
    /// answer the transport did not take at once.</summary>
    private async Task FinishPutAsync(HttpContext context, ReadOnlyMemory<char> key, Task<WriteOutcome[]>? outcomes, Task? answer,
        long started)
    {
        try
        {
            if (outcomes is not null)
            {
                var results = await outcomes;
                answer = AnswerWriteAsync(context, key.Span, results[0]);
            }

            await answer!;
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            await RefuseAsync(context, e);
        }
        finally
        {
            RecordPut(context, started);
        }
    }

    /// <summary>
    /// A PUT proposed on this node, waiting for its batch: resumed by the batch's completion (on the thread that
    /// answers it), it writes the answer there and completes the task the request's handler returned. Pooled: rented
    /// as the PUT is proposed, given back before its task completes. The answer runs in the request's execution
    /// context, as the continuation of an await would. Whatever cannot finish at once goes on in
    /// <see cref="FinishPutAsync"/>.
    /// </summary>
    private sealed class ProposedPut
    {
        private static readonly ContextCallback s_answer = static state => ((ProposedPut)state!).Answer();

        private readonly Action _resume;
        private HttpApi? _api;
        private HttpContext? _context;
        private ReadOnlyMemory<char> _key;
        private CommandService.WritesHere _here;
        private long _started;
        private ExecutionContext? _executionContext;
        private AsyncTaskMethodBuilder _answered;

        public ProposedPut() => _resume = Resume;

        /// <summary>Waits for <paramref name="here"/>'s batch; the task completes once the PUT is answered.</summary>
        public static Task Start(HttpApi api, HttpContext context, ReadOnlyMemory<char> key, CommandService.WritesHere here, long started)
        {
            var put = SharedPool<ProposedPut>.Rent();
            put._api = api;
            put._context = context;
            put._key = key;
            put._here = here;
            put._started = started;
            put._executionContext = ExecutionContext.Capture();
            put._answered = AsyncTaskMethodBuilder.Create();
            var answered = put._answered.Task;
#pragma warning disable CA2012 // the batch's wait, consumed once: resumed through its awaiter, its result taken in AnswerProposedPut
            var wait = here.WaitAsync().GetAwaiter();
#pragma warning restore CA2012
            if (wait.IsCompleted)
            {
                put.Answer(); // nothing proposed (refused, or out of time): answered here, as an await would go on
            }
            else
            {
                wait.UnsafeOnCompleted(put._resume);
            }

            return answered;
        }

        private void Resume() => RunIn(_executionContext, s_answer, this);

        private void Answer()
        {
            var api = _api!;
            var context = _context!;
            var key = _key;
            var here = _here;
            long started = _started;
            var answered = _answered;
            Return();
            CompleteWith(api.AnswerProposedPut(context, key, here, started), answered);
        }

        private void Return()
        {
            _api = null;
            _context = null;
            _key = default;
            _here = default;
            _executionContext = null;
            _answered = default;
            SharedPool<ProposedPut>.Return(this);
        }
    }

    /// <summary>A proposed PUT once its batch completed: its outcome answered and the PUT recorded, at once when the
    /// outcome is final and the transport takes the answer at once (nearly always), else in
    /// <see cref="FinishPutAsync"/>.</summary>
    private Task AnswerProposedPut(HttpContext context, ReadOnlyMemory<char> key, CommandService.WritesHere here, long started)
    {
        try
        {
#pragma warning disable CA2012 // the batch completed (ProposedPut resumes only then): its result, taken once
            here.WaitAsync().GetAwaiter().GetResult();
#pragma warning restore CA2012
            var outcomes = service.FinishHereAsync(here);
            if (!outcomes.IsCompletedSuccessfully)
            {
                return FinishPutAsync(context, key, outcomes.AsTask(), null, started); // retried on a new leader
            }

            var answer = AnswerWriteAsync(context, key.Span, outcomes.Result[0]);
            if (answer.IsCompletedSuccessfully)
            {
                RecordPut(context, started);
                return Task.CompletedTask;
            }

            return FinishPutAsync(context, key, null, answer, started);
        }
        catch (Exception e)
        {
            return FailPutAsync(context, e, started);
        }
    }

    /// <summary>A proposed PUT whose finishing threw: refused as a bad request when it is one, else the exception is the
    /// handler's (as it was from an await).</summary>
    private async Task FailPutAsync(HttpContext context, Exception e, long started)
    {
        try
        {
            if (e is BadHttpRequestException bad && !context.Response.HasStarted)
            {
                await RefuseAsync(context, bad);
                return;
            }

            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }
        finally
        {
            RecordPut(context, started);
        }
    }

    private static void RecordPut(HttpContext context, long started) =>
        Record(context, started, HttpMethods.IsPost(context.Request.Method) ? s_postTag : s_putTag);

    private async Task DeleteKeyAsync(HttpContext context, string key)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            await DeleteKeyCoreAsync(context, key);
        }
        finally
        {
            Record(context, started, s_deleteTag);
        }
    }

    private async Task DeleteKeyCoreAsync(HttpContext context, string key)
    {
        ulong? prevVersion = null;
        string? prevValue = null;
        if (context.Request.QueryString.HasValue)
        {
            var query = context.Request.Query;
            if (!TryParseQuery(query, "prevVersion", out prevVersion))
            {
                await Error(StatusCodes.Status400BadRequest, "prevVersion must be a whole number", "not-applied").ExecuteAsync(context);
                return;
            }

            prevValue = query["prevValue"];
        }

        if (prevVersion is not null && prevValue is not null)
        {
            await Error(StatusCodes.Status400BadRequest, "give prevVersion or prevValue, not both", "not-applied").ExecuteAsync(context);
            return;
        }

        var command = CacheCommand.Delete(key);
        if (prevVersion is { } version)
        {
            command = command with { Compare = CompareKind.Version, ExpectedVersion = version };
        }
        else if (prevValue is not null)
        {
            command = command with { Compare = CompareKind.Value, ExpectedValue = Encoding.UTF8.GetBytes(prevValue) };
        }

        await WriteKeyAsync(context, key, command, 0);
    }

    /// <summary>A <c>/v1/kv</c> write through <see cref="CommandService"/>, answered with its JSON view.</summary>
    private async Task WriteKeyAsync(HttpContext context, string key, CacheCommand command, long ttlSeconds)
    {
        if (WriteProblem(command) is { } problem)
        {
            await problem.ExecuteAsync(context);
            return;
        }

        var outcomes = await service.WriteBatchAsync([WriteRequestOf(command, ttlSeconds)], context.RequestAborted);
        await AnswerWriteAsync(context, key, outcomes[0]);
    }

    /// <summary>A <c>/v1/kv</c> write's answer: its JSON view, or its failure (no await of its own: the body goes
    /// out in one write).</summary>
    private Task AnswerWriteAsync(HttpContext context, ReadOnlySpan<char> key, WriteOutcome outcome)
    {
        if (FailureOf(context, outcome) is { } failure)
        {
            return failure.ExecuteAsync(context);
        }

        var result = outcome.Result;
        switch (result.Status)
        {
            case ApplyStatus.Ok or ApplyStatus.CompareFailed:
                context.Response.StatusCode = result.Status == ApplyStatus.Ok ? StatusCodes.Status200OK : StatusCodes.Status412PreconditionFailed;
                context.Response.Headers[VersionHeader] = result.Version.ToString(CultureInfo.InvariantCulture);
                return WriteViewAsync(context.Response, key, result);
            case ApplyStatus.OutOfMemory:
                return Error(StatusCodes.Status507InsufficientStorage, RedisErrors.OutOfMemory, "not-applied").ExecuteAsync(context);
            default:
                return Error(StatusCodes.Status400BadRequest, "invalid command", "not-applied").ExecuteAsync(context);
        }
    }

    // A thread's buffer and writer for write views: the view's bytes are copied into the response as it is written.
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? s_viewBuffer;

    [ThreadStatic]
    private static Utf8JsonWriter? s_viewWriter;

    /// <summary>A write's <see cref="KvWriteView"/> as its JSON (the same bytes as the serializer's: its properties in
    /// order, default escaping), written without a view object or an array per answer.</summary>
    private static Task WriteViewAsync(HttpResponse response, ReadOnlySpan<char> key, ApplyResult result)
    {
        var buffer = s_viewBuffer ??= new ArrayBufferWriter<byte>(256);
        buffer.ResetWrittenCount();
        var writer = s_viewWriter ??= new Utf8JsonWriter(buffer);
        writer.Reset(buffer);
        writer.WriteStartObject();
        writer.WriteString("key", key);
        writer.WriteBoolean("succeeded", result.Succeeded);
        writer.WriteNumber("version", result.Version);
        writer.WriteBoolean("previousExisted", result.PreviousExisted);
        writer.WriteEndObject();
        writer.Flush();

        response.ContentType = JsonUtf8;
        response.ContentLength = buffer.WrittenCount;
        var pending = response.BodyWriter.WriteAsync(buffer.WrittenMemory);
        if (pending.IsCompletedSuccessfully)
        {
            _ = pending.Result;
            return Task.CompletedTask;
        }

        // A write that did not complete may still hold the buffer (the response's start awaiting an OnStarting
        // callback): it keeps this one, and the thread makes new ones.
        s_viewBuffer = null;
        s_viewWriter = null;
        return pending.AsTask();
    }

    /// <summary>The key, from the catch-all route value (routing's path: "/v1/kv" alone has none).</summary>
    private static string KeyOf(HttpContext context) => context.Request.RouteValues["key"] as string ?? string.Empty;

    /// <summary>
    /// <c>?consistency=</c> as minimal-API binding gave it (null when absent; several values joined by commas). The
    /// query strings the clients send (<c>?consistency=stale</c> and the like) are recognised without building the
    /// query collection.
    /// </summary>
    private static string? ConsistencyText(HttpRequest request)
    {
        string? query = request.QueryString.Value;
        if (string.IsNullOrEmpty(query))
        {
            return null;
        }

        const string Prefix = "?consistency=";
        if (query.StartsWith(Prefix, StringComparison.Ordinal))
        {
            switch (query.AsSpan(Prefix.Length))
            {
                case "stale":
                    return "stale";
                case "linearizable":
                    return "linearizable";
                case "lease":
                    return "lease";
            }
        }

        return request.Query["consistency"];
    }

    /// <summary>A query parameter bound as minimal APIs bind a nullable number: absent or empty is null, anything
    /// else must parse.</summary>
    private static bool TryParseQuery<T>(IQueryCollection query, string name, out T? value)
        where T : struct, IParsable<T>
    {
        value = null;
        string? text = query[name];
        if (string.IsNullOrEmpty(text))
        {
            return true;
        }

        if (!T.TryParse(text, CultureInfo.InvariantCulture, out var parsed))
        {
            return false;
        }

        value = parsed;
        return true;
    }

    private IResult ValueTooLarge() =>
        Error(StatusCodes.Status413PayloadTooLarge, $"value larger than {options.ValueBytesMax} bytes", "not-applied");

    /// <summary>Writes a whole body with its length, in one write; completes without an await when the transport
    /// takes it at once.</summary>
    private static Task WriteBodyAsync(HttpResponse response, byte[] body, string contentType)
    {
        response.ContentType = contentType;
        response.ContentLength = body.Length;
        var pending = response.BodyWriter.WriteAsync(body);
        if (pending.IsCompletedSuccessfully)
        {
            _ = pending.Result;
            return Task.CompletedTask;
        }

        return pending.AsTask();
    }

    /// <summary>Records the request once its answer is written (without an await when it already is).</summary>
    private static Task Finish(HttpContext context, long started, KeyValuePair<string, object?> method, Task answer)
    {
        if (answer.IsCompletedSuccessfully)
        {
            Record(context, started, method);
            return Task.CompletedTask;
        }

        return FinishAsync(context, started, method, answer);

        static async Task FinishAsync(HttpContext context, long started, KeyValuePair<string, object?> method, Task answer)
        {
            await answer;
            Record(context, started, method);
        }
    }

    /// <summary>
    /// <c>stcache.http.request</c> for one key-value request (routing to the answer written), and
    /// <c>stcache.proposals.failed</c> for a write answered 5xx, by its outcome header. Recorded here, not by a
    /// middleware around every request.
    /// </summary>
    private static void Record(HttpContext context, long started, KeyValuePair<string, object?> method)
    {
        ServerMetrics.Request.Record(ServerMetrics.Seconds(started), method);
        if (context.Response.StatusCode >= 500 && method.Value is string name && !HttpMethods.IsGet(name))
        {
            ServerMetrics.ProposalsFailed.Add(1, new KeyValuePair<string, object?>("outcome", context.Response.Headers[OutcomeHeader].ToString()));
        }
    }
}
