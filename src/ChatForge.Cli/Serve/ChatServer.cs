using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Serving;
using ChatForge.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ChatForge.Cli.Serve;

/// <summary>What `chatforge serve` serves, and its limits.</summary>
public sealed record ServeOptions
{
    /// <summary>Model name → directory (a chat model in Hugging Face layout).</summary>
    public Dictionary<string, string> Models { get; init; } = new();
    /// <summary>A pipeline run: every stage's model under its stage name, and its reward model for scoring.</summary>
    public string? Pipeline { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0: a free port (the bound address is <see cref="ChatServer.BaseUrl"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every /v1 route needs "Authorization: Bearer KEY".</summary>
    public string? ApiKey { get; init; }
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Requests decoded together per model, and the most a model's queue holds (waiting or running).</summary>
    public int MaxBatch { get; init; } = 8;
    public int QueueCapacity { get; init; } = 64;
    public string Device { get; init; } = "auto";
}

/// <summary>
/// An OpenAI-compatible chat server on Kestrel: POST /v1/chat/completions (plain and streamed as server-sent events),
/// GET /v1/models, GET /v1/models/{id}, GET /health. Every model is a <see cref="ChatForgeChatClient"/> (its own
/// <see cref="GenerationQueue"/>: concurrent requests to one model are decoded together). A client's mistake is an
/// OpenAI error body ({"error": {"message", "type", "param", "code"}}) with its 4xx status, never a stack trace, and the
/// server keeps serving.
/// </summary>
public sealed class ChatServer : IAsyncDisposable
{
    readonly WebApplication _app;
    readonly Dictionary<string, ChatForgeChatClient> _models;
    readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    readonly ServeOptions _o;
    long _completed, _cancelled, _rejected;

    ChatServer(WebApplication app, Dictionary<string, ChatForgeChatClient> models, (RewardModel Model, ITokenizer Tokenizer)? reward, ServeOptions o)
    {
        _app = app;
        _models = models;
        Reward = reward?.Model;
        _rewardTok = reward?.Tokenizer;
        _o = o;
    }

    readonly ITokenizer? _rewardTok;
    readonly Lock _rewardLock = new();

    public IReadOnlyDictionary<string, ChatForgeChatClient> Models => _models;
    public RewardModel? Reward { get; }
    /// <summary>The address the server listens on, e.g. http://127.0.0.1:8000.</summary>
    public string BaseUrl { get; private set; } = "";
    /// <summary>Requests answered in full, ended early because their client went away, and refused for a full queue.</summary>
    public long Completed => Interlocked.Read(ref _completed);
    public long Cancelled => Interlocked.Read(ref _cancelled);
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>The stage models of a pipeline run that exist, by stage name (base is the pretrained model).</summary>
    public static Dictionary<string, string> PipelineModels(string run)
    {
        if (!Directory.Exists(run)) throw new ChatForgeException($"{run}: no such pipeline run directory");
        var found = new Dictionary<string, string>();
        void Add(string name, string dir) { if (File.Exists(Path.Combine(dir, "config.json"))) found[name] = dir; }
        Add("base", Path.Combine(run, "pretrain", "model"));
        foreach (var stage in new[] { "sft", "sft_lora" }) Add(stage, Path.Combine(run, stage, "model"));
        for (int r = 1; Directory.Exists(Path.Combine(run, "ppo", $"policy_round{r}")); r++) Add($"ppo_round{r}", Path.Combine(run, "ppo", $"policy_round{r}"));
        Add("ppo", Path.Combine(run, "ppo", "model"));
        Add("dpo", Path.Combine(run, "dpo", "model"));
        if (found.Count == 0) throw new ChatForgeException($"{run}: no stage model (pretrain/model, sft/model, ppo/model, …) in this pipeline run");
        return found;
    }

    /// <summary>Loads the models and starts listening; the returned server is serving.</summary>
    public static async Task<ChatServer> StartAsync(ServeOptions o, Action<string>? log = null)
    {
        var dirs = new Dictionary<string, string>(o.Pipeline is { } run ? PipelineModels(run) : new());
        foreach (var (name, dir) in o.Models) dirs[name] = dir;
        if (dirs.Count == 0) throw new ChatForgeException("nothing to serve: give --model DIR (or NAME=DIR), or --pipeline RUN_DIR");
        if (o.Port is < 0 or > 65535) throw new ChatForgeException($"--port must be 0–65535, got {o.Port}");
        if (o.MaxBatch < 1) throw new ChatForgeException($"--max-batch must be ≥ 1, got {o.MaxBatch}");
        if (o.QueueCapacity < o.MaxBatch) throw new ChatForgeException($"--queue must be at least --max-batch ({o.MaxBatch}), got {o.QueueCapacity}");
        var device = TorchRuntime.ResolveDevice(o.Device);
        var models = new Dictionary<string, ChatForgeChatClient>();
        foreach (var (name, dir) in dirs)
        {
            if (!File.Exists(Path.Combine(dir, "config.json"))) throw new ChatForgeException($"{dir}: no config.json (model '{name}')");
            models[name] = ChatForgeChatClient.Load(dir, name, device, o.MaxBatch, o.QueueCapacity);
            log?.Invoke($"model {name}: {dir}");
        }
        (RewardModel, ITokenizer)? reward = null;
        if (o.Pipeline is { } p && File.Exists(Path.Combine(p, "reward", "model", "config.json")))
        {
            reward = RewardCheckpoint.Load(Path.Combine(p, "reward", "model"), device);
            log?.Invoke($"reward model: {Path.Combine(p, "reward", "model")}");
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = o.MaxBodyBytes;
            k.AddServerHeader = false;
        });
        builder.WebHost.UseUrls($"http://{(o.Host.Contains(':') ? $"[{o.Host}]" : o.Host)}:{o.Port}");
        var app = builder.Build();
        var server = new ChatServer(app, models, reward, o);
        server.Map(app);
        await app.StartAsync().ConfigureAwait(false);
        server.BaseUrl = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().Replace("[::]", "localhost", StringComparison.Ordinal);
        log?.Invoke($"listening on {server.BaseUrl}");
        return server;
    }

    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    void Map(WebApplication app)
    {
        // Errors first: a client's mistake is its status with an OpenAI error body; anything else a 500 without details.
        app.Use(async (ctx, next) =>
        {
            try { await next(ctx); }
            catch (ApiError e) { await Error(ctx, e); }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await Error(ctx, new ApiError(413, $"The request body is larger than {_o.MaxBodyBytes} bytes.", null, "request_too_large"));
            }
            catch (BadHttpRequestException e) { await Error(ctx, new ApiError(e.StatusCode, "Bad request: " + e.Message)); }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { /* the client went away */ }
            catch (Exception e)
            {
                Console.Error.WriteLine($"error: {ctx.Request.Method} {ctx.Request.Path}: {e.GetType().Name}: {e.Message}");
                await Error(ctx, new ApiError(500, "The server had an error while processing your request.", type: "server_error"));
            }
        });
        // The key, on every /v1 route.
        app.Use(async (ctx, next) =>
        {
            if (_o.ApiKey is { } key && ctx.Request.Path.StartsWithSegments("/v1"))
            {
                var auth = ctx.Request.Headers.Authorization.ToString();
                if (auth.Length == 0)
                    throw new ApiError(401, "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).", code: "invalid_api_key");
                if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(auth), Encoding.UTF8.GetBytes("Bearer " + key)))
                    throw new ApiError(401, "Incorrect API key provided.", code: "invalid_api_key");
            }
            await next(ctx);
        });

        app.MapGet("/health", () => Results.Json(new JsonObject
        {
            ["status"] = "ok",
            ["models"] = new JsonArray(_models.Keys.Select(k => (JsonNode)k).ToArray()),
            ["reward_model"] = Reward is not null,
            ["requests"] = new JsonObject { ["completed"] = Completed, ["cancelled"] = Cancelled, ["rejected"] = Rejected },
            ["queued"] = _models.Values.Sum(m => m.Queue.Pending),
        }));
        app.MapGet("/v1/models", () => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(_models.Keys.Select(k => (JsonNode)ModelObject(k)).ToArray()),
        }));
        app.MapGet("/v1/models/{id}", (string id) => _models.ContainsKey(id) ? Results.Json(ModelObject(id)) : throw NoModel(id));
        app.MapPost("/v1/chat/completions", ChatCompletions);
        app.MapPost("/v1/score", Score);
        app.MapGet("/", () => Results.Content(ChatPage.Html, "text/html; charset=utf-8"));
        app.MapFallback(ctx => throw new ApiError(404, $"Unknown request URL: {ctx.Request.Method} {ctx.Request.Path}.", code: "unknown_url"));
    }

    JsonObject ModelObject(string id) => new() { ["id"] = id, ["object"] = "model", ["created"] = _created, ["owned_by"] = "chatforge" };

    static ApiError NoModel(string id) => new(404, $"The model '{id}' does not exist.", "model", "model_not_found");

    async Task ChatCompletions(HttpContext ctx)
    {
        using var doc = await ReadJson(ctx);
        var req = Parsed(() => OpenAiRequest.Parse(doc.RootElement));
        if (!_models.TryGetValue(req.Model, out var client)) throw NoModel(req.Model);
        try
        {
            if (req.Stream) await Stream(ctx, client, req);
            else await Complete(ctx, client, req);
        }
        catch (QueueFullException e)
        {
            Interlocked.Increment(ref _rejected);
            if (ctx.Response.HasStarted) throw;
            throw new ApiError(503, e.Message, null, "queue_full", "server_error");
        }
        catch (ArgumentOutOfRangeException e) { throw new ApiError(400, e.Message.Split(" (Parameter")[0], e.ParamName, "invalid_value"); }
        catch (ArgumentException e) { throw new ApiError(400, e.Message.Split(" (Parameter")[0], e.ParamName, "invalid_value"); }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            Interlocked.Increment(ref _cancelled);
        }
    }

    /// <summary>
    /// POST /v1/score {"messages": [...], "response": "..."}: the reward model's normalised score of the response as the
    /// assistant's answer to the conversation (a pipeline's reward stage; 404 without one).
    /// </summary>
    async Task Score(HttpContext ctx)
    {
        if (Reward is null || _rewardTok is null) throw new ApiError(404, "This server has no reward model (serve a pipeline run with --pipeline).", null, "no_reward_model");
        using var body = await ReadJson(ctx);
        var root = body.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new ApiError(400, "The request body must be a JSON object.");
        var messages = Parsed(() => OpenAiRequest.ParseMessages(root));
        if (messages[^1].Role != ChatRole.User) throw new ApiError(400, "The last message must be the user's: the response answers it.", "messages", "invalid_value");
        if (!root.TryGetProperty("response", out var resp) || resp.ValueKind != JsonValueKind.String)
            throw new ApiError(400, "Missing required parameter: 'response' (a string).", "response", "missing_required_parameter");
        var all = ChatForgeChatClient.Messages(messages);
        var prompt = new ChatPrompt(all[^1].Content, all.Take(all.Count - 1).ToList());
        var response = Parsed(() => resp.GetString()!);
        double score;
        lock (_rewardLock) score = Reward.Rate(_rewardTok, new[] { (prompt, true, response) })[0];
        await ctx.Response.WriteAsJsonAsync(new JsonObject { ["object"] = "reward.score", ["model"] = "reward", ["score"] = Math.Round(score, 6) });
    }

    /// <summary>Reads request fields; a string JSON accepts but .NET cannot hold (a lone surrogate escape) is a 400, not a 500.</summary>
    static T Parsed<T>(Func<T> read)
    {
        try { return read(); }
        catch (InvalidOperationException e) when (e is not ObjectDisposedException)
        {
            throw new ApiError(400, "A string in the request is not valid text (a lone UTF-16 surrogate escape).", null, "invalid_value");
        }
    }

    async Task<JsonDocument> ReadJson(HttpContext ctx)
    {
        if (ctx.Request.ContentLength > _o.MaxBodyBytes)
            throw new ApiError(413, $"The request body is larger than {_o.MaxBodyBytes} bytes.", null, "request_too_large");
        try { return await JsonDocument.ParseAsync(ctx.Request.Body, default, ctx.RequestAborted); }
        catch (JsonException e) { throw new ApiError(400, $"We could not parse the JSON body of your request: {e.Message}", null, "invalid_json"); }
    }

    async Task Complete(HttpContext ctx, ChatForgeChatClient client, OpenAiRequest req)
    {
        var r = await client.GetResponseAsync(req.Messages, req.Options, ctx.RequestAborted);
        var c = (Completion)r.RawRepresentation!;
        Interlocked.Increment(ref _completed);
        var choice = new JsonObject
        {
            ["index"] = 0,
            ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = r.Text, ["refusal"] = null },
            ["logprobs"] = req.Logprobs ? Logprobs(c.Logprobs ?? Array.Empty<TokenLogprob>()) : null,
            ["finish_reason"] = FinishReason(r.FinishReason),
        };
        await ctx.Response.WriteAsJsonAsync(new JsonObject
        {
            ["id"] = r.ResponseId, ["object"] = "chat.completion", ["created"] = r.CreatedAt!.Value.ToUnixTimeSeconds(), ["model"] = req.Model,
            ["choices"] = new JsonArray(choice), ["usage"] = Usage(r.Usage!), ["system_fingerprint"] = null,
        }, ctx.RequestAborted);
    }

    /// <summary>Server-sent events: the role first, then the text as it is generated, the finish reason, the usage if asked, [DONE].</summary>
    async Task Stream(HttpContext ctx, ChatForgeChatClient client, OpenAiRequest req)
    {
        string? id = null;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        async Task Send(JsonNode chunk)
        {
            await ctx.Response.WriteAsync("data: " + chunk.ToJsonString() + "\n\n", ctx.RequestAborted);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
        }
        JsonObject Chunk(JsonObject delta, string? finish, IReadOnlyList<TokenLogprob>? logprobs = null) => new()
        {
            ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = req.Model, ["system_fingerprint"] = null,
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0, ["delta"] = delta, ["logprobs"] = req.Logprobs && logprobs is not null ? Logprobs(logprobs) : null, ["finish_reason"] = finish,
            }),
        };
        JsonObject WithUsage(JsonObject chunk) { if (req.IncludeUsage) chunk["usage"] = null; return chunk; }

        await foreach (var u in client.GetStreamingResponseAsync(req.Messages, req.Options, ctx.RequestAborted))
        {
            if (id is null)
            {
                // The first update: nothing can be refused any more, so the stream begins.
                id = u.ResponseId;
                ctx.Response.ContentType = "text/event-stream";
                ctx.Response.Headers.CacheControl = "no-cache";
                await Send(WithUsage(Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null)));
            }
            var lps = u.RawRepresentation as IReadOnlyList<TokenLogprob>;
            if (u.Text.Length > 0 || lps is { Count: > 0 }) await Send(WithUsage(Chunk(new JsonObject { ["content"] = u.Text }, null, lps)));
            if (u.FinishReason is { } f)
            {
                await Send(WithUsage(Chunk(new JsonObject(), FinishReason(f))));
                if (req.IncludeUsage && u.Contents.OfType<UsageContent>().FirstOrDefault() is { } usage)
                    await Send(new JsonObject
                    {
                        ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = req.Model, ["system_fingerprint"] = null,
                        ["choices"] = new JsonArray(), ["usage"] = Usage(usage.Details),
                    });
            }
        }
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
        Interlocked.Increment(ref _completed);
    }

    static string FinishReason(ChatFinishReason? f) => f == ChatFinishReason.Length ? "length" : "stop";

    static JsonObject Usage(UsageDetails u) => new()
    {
        ["prompt_tokens"] = u.InputTokenCount ?? 0, ["completion_tokens"] = u.OutputTokenCount ?? 0, ["total_tokens"] = u.TotalTokenCount ?? 0,
    };

    static JsonArray Bytes(string s) => new(Encoding.UTF8.GetBytes(s).Select(b => (JsonNode)(int)b).ToArray());

    static JsonObject Logprobs(IReadOnlyList<TokenLogprob> tokens) => new()
    {
        ["content"] = new JsonArray(tokens.Select(t => (JsonNode)new JsonObject
        {
            ["token"] = t.Text, ["logprob"] = Math.Round(t.Logprob, 6), ["bytes"] = Bytes(t.Text),
            ["top_logprobs"] = new JsonArray(t.Top.Select(a => (JsonNode)new JsonObject
            {
                ["token"] = a.Text, ["logprob"] = Math.Round(a.Logprob, 6), ["bytes"] = Bytes(a.Text),
            }).ToArray()),
        }).ToArray()),
        ["refusal"] = null,
    };

    static async Task Error(HttpContext ctx, ApiError e)
    {
        var body = new JsonObject { ["error"] = new JsonObject { ["message"] = e.Message, ["type"] = e.Type, ["param"] = e.Param, ["code"] = e.Code } };
        if (ctx.Response.HasStarted)
        {
            // A stream already begun: an error event instead of the finish and [DONE], so the answer is not taken as complete.
            try { await ctx.Response.WriteAsync("data: " + body.ToJsonString() + "\n\n"); } catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { }
            return;
        }
        ctx.Response.Clear();
        ctx.Response.StatusCode = e.Status;
        if (e.Status == StatusCodes.Status503ServiceUnavailable) ctx.Response.Headers.RetryAfter = "1";
        await ctx.Response.WriteAsJsonAsync(body);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        foreach (var m in _models.Values) m.Dispose();
        Reward?.Dispose();
    }
}
