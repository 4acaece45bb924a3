#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental in the OpenAI library
using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using ChatForge.Cli.Serve;
using ChatForge.Tests.Support;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using Xunit;

namespace ChatForge.Tests.Serve;

/// <summary>
/// `chatforge serve` on a free loopback port, called by the official OpenAI .NET client, Microsoft.Extensions.AI.OpenAI's
/// IChatClient and plain HTTP (for every bad request).
/// </summary>
public class ServerTests
{
    const string Key = "test-key";

    static async Task<ChatServer> Start(TempDir d, string? key = Key, long maxBody = 1 << 20, int maxBatch = 8, int queue = 64, bool longModel = false)
    {
        var models = new Dictionary<string, string> { ["tiny"] = TinyBase.Create(d["tiny"]), ["other"] = TinyBase.Create(d["other"], seed: 3, family: "llama") };
        if (longModel) models["long"] = ChatClientTests.LongModel(d["long"]);
        return await ChatServer.StartAsync(new ServeOptions { Models = models, Port = 0, ApiKey = key, MaxBodyBytes = maxBody, MaxBatch = maxBatch, QueueCapacity = queue });
    }

    static ChatClient OpenAi(ChatServer s, string model = "tiny", string key = Key) =>
        new(model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(s.BaseUrl + "/v1"), RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0) });

    static HttpClient Http(ChatServer s, string? key = Key)
    {
        // No draining of an unread response on dispose: hanging up closes the connection at once, as a browser tab does.
        var h = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(s.BaseUrl) };
        if (key is not null) h.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        return h;
    }

    [Theory]
    [InlineData("tiny")]    // GPT-2
    [InlineData("other")]   // Llama
    public async Task The_official_openai_client_completes_streams_converses_and_sees_length_and_stop(string model)
    {
        using var d = new TempDir();
        await using var s = await Start(d);
        var client = OpenAi(s, model);
        var greedy = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12, Seed = 5 };

        ChatCompletion plain = await client.CompleteChatAsync(new OpenAI.Chat.ChatMessage[] { new UserChatMessage("Hello there") }, greedy);
        Assert.Equal(ChatMessageRole.Assistant, plain.Role);
        Assert.Equal(model, plain.Model);
        Assert.True(plain.Usage.InputTokenCount > 0);
        Assert.Equal(plain.Usage.InputTokenCount + plain.Usage.OutputTokenCount, plain.Usage.TotalTokenCount);

        // Streamed: the same text, chunk by chunk, the finish reason at the end.
        var text = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        int chunks = 0;
        await foreach (var u in client.CompleteChatStreamingAsync(new OpenAI.Chat.ChatMessage[] { new UserChatMessage("Hello there") }, greedy))
        {
            chunks++;
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            finish ??= u.FinishReason;
        }
        Assert.Equal(plain.Content[0].Text, text.ToString());
        Assert.Equal(plain.FinishReason, finish);
        Assert.True(chunks >= 2);

        // A conversation: the earlier turns change the answer's prompt.
        var turns = new OpenAI.Chat.ChatMessage[] { new SystemChatMessage("Be brief."), new UserChatMessage("Let's talk about Ohio."), new AssistantChatMessage("Sure."), new UserChatMessage("Hello there") };
        ChatCompletion multi = await client.CompleteChatAsync(turns, greedy);
        Assert.True(multi.Usage.InputTokenCount > plain.Usage.InputTokenCount);

        // max_tokens reached: "length"; a stop sequence met: "stop", the text cut before it.
        ChatCompletion cut = await client.CompleteChatAsync(new OpenAI.Chat.ChatMessage[] { new UserChatMessage("Hello there") },
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 2 });
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, cut.FinishReason);
        Assert.Equal(2, cut.Usage.OutputTokenCount);
        var full = plain.Content[0].Text;
        Assert.True(full.Length >= 4, $"the test model's answer '{full}' is too short to cut");
        var stop = full.Substring(2, 2);
        var stopOptions = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        stopOptions.StopSequences.Add(stop);
        ChatCompletion stopped = await client.CompleteChatAsync(new OpenAI.Chat.ChatMessage[] { new UserChatMessage("Hello there") }, stopOptions);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
        // Streamed with the stop: no piece of the stop sequence leaks out.
        var streamedStop = new StringBuilder();
        await foreach (var u in client.CompleteChatStreamingAsync(new OpenAI.Chat.ChatMessage[] { new UserChatMessage("Hello there") }, stopOptions))
            foreach (var part in u.ContentUpdate) streamedStop.Append(part.Text);
        Assert.Equal(stopped.Content[0].Text, streamedStop.ToString());
    }

    [Fact]
    public async Task Microsoft_extensions_ai_over_the_server_answers_as_our_own_client_does()
    {
        using var d = new TempDir();
        await using var s = await Start(d);
        IChatClient overHttp = OpenAi(s, "other").AsIChatClient();
        var messages = new List<Microsoft.Extensions.AI.ChatMessage> { new(ChatRole.User, "What is the capital of Ohio?") };
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10 };
        var remote = await overHttp.GetResponseAsync(messages, options);
        var local = await s.Models["other"].GetResponseAsync(messages, options);
        Assert.Equal(local.Text, remote.Text);
        Assert.Equal(local.FinishReason, remote.FinishReason);
        Assert.Equal(local.Usage!.OutputTokenCount, remote.Usage!.OutputTokenCount);
        var streamed = new StringBuilder();
        await foreach (var u in overHttp.GetStreamingResponseAsync(messages, options)) streamed.Append(u.Text);
        Assert.Equal(local.Text, streamed.ToString());
    }

    static async Task<(HttpStatusCode Status, JsonElement Error, HttpResponseMessage Response)> Post(HttpClient h, string body, string path = "/v1/chat/completions")
    {
        var r = await h.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await r.Content.ReadAsStringAsync();
        var json = JsonDocument.Parse(text).RootElement;
        return (r.StatusCode, json.TryGetProperty("error", out var e) ? e : default, r);
    }

    [Theory]
    [InlineData("{bad json", 400, null, "invalid_json")]
    [InlineData("[1, 2]", 400, null, null)]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}]}""", 400, "model", "missing_required_parameter")]
    [InlineData("""{"model":"tiny"}""", 400, "messages", "missing_required_parameter")]
    [InlineData("""{"model":"tiny","messages":"hi"}""", 400, "messages", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[]}""", 400, "messages", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"robot","content":"hi"}]}""", 400, "messages[0].role", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":5}]}""", 400, "messages[0].content", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0].type", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", 400, "temperature", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":2.5}""", 400, "temperature", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"top_p":1.5}""", 400, "top_p", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":0}""", 400, "max_tokens", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1.5}""", 400, "max_completion_tokens", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"n":2}""", 400, "n", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}""", 400, "stop", "invalid_value")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stop":7}""", 400, "stop", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", 400, "stream", "invalid_type")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""", 400, "top_logprobs", "invalid_value")]
    [InlineData("""{"model":"nope","messages":[{"role":"user","content":"hi"}]}""", 404, "model", "model_not_found")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"\ud800"}]}""", 400, null, "invalid_value")]
    public async Task A_bad_request_gets_its_status_and_an_openai_error_body_and_the_server_keeps_serving(string body, int status, string? param, string? code)
    {
        using var d = new TempDir();
        await using var s = await Start(d);
        using var h = Http(s);
        var (st, error, _) = await Post(h, body);
        Assert.Equal(status, (int)st);
        Assert.Equal(JsonValueKind.String, error.GetProperty("message").ValueKind);
        Assert.Equal(status == 404 ? "invalid_request_error" : "invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString());
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.DoesNotContain("   at ", error.GetProperty("message").GetString());   // no stack trace
        // Still serving.
        Assert.Equal(HttpStatusCode.OK, (await h.GetAsync("/health")).StatusCode);
        var ok = await h.PostAsync("/v1/chat/completions", new StringContent("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Routes_keys_body_limit_models_and_logprobs()
    {
        using var d = new TempDir();
        await using var s = await Start(d, maxBody: 4000);
        using var h = Http(s);
        // The key: none or a wrong one is 401 on /v1; /health needs none.
        using (var anonymous = Http(s, key: null))
        {
            var (st, e, _) = await Post(anonymous, """{"model":"tiny","messages":[{"role":"user","content":"hi"}]}""");
            Assert.Equal(HttpStatusCode.Unauthorized, st);
            Assert.Equal("invalid_api_key", e.GetProperty("code").GetString());
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/models")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health")).StatusCode);
        }
        using (var wrong = Http(s, key: "nope"))
            Assert.Equal(HttpStatusCode.Unauthorized, (await Post(wrong, """{"model":"tiny","messages":[{"role":"user","content":"hi"}]}""")).Status);
        // An unknown route: 404 with the error body.
        var (nf, nfe, _) = await Post(h, "{}", "/v1/completions");
        Assert.Equal(HttpStatusCode.NotFound, nf);
        Assert.Equal("unknown_url", nfe.GetProperty("code").GetString());
        // Too large a body: 413.
        var big = JsonSerializer.Serialize(new { model = "tiny", messages = new[] { new { role = "user", content = new string('x', 5000) } } });
        var (tl, tle, _) = await Post(h, big);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tl);
        Assert.Equal("request_too_large", tle.GetProperty("code").GetString());
        // Models.
        var models = JsonDocument.Parse(await h.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("list", models.GetProperty("object").GetString());
        Assert.Equal(new[] { "other", "tiny" }, models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).Order());
        var one = JsonDocument.Parse(await h.GetStringAsync("/v1/models/tiny")).RootElement;
        Assert.Equal("model", one.GetProperty("object").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await h.GetAsync("/v1/models/nope")).StatusCode);
        // Log-probabilities: one per token, the chosen token among the top ones when greedy.
        var r = await h.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0,"logprobs":true,"top_logprobs":3}""", Encoding.UTF8, "application/json"));
        var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        var choice = body.GetProperty("choices")[0];
        var content = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), content.Count);
        Assert.All(content, t =>
        {
            Assert.True(t.GetProperty("logprob").GetDouble() <= 0);
            var top = t.GetProperty("top_logprobs").EnumerateArray().ToList();
            Assert.Equal(3, top.Count);
            Assert.Equal(top[0].GetProperty("logprob").GetDouble(), t.GetProperty("logprob").GetDouble(), 5);   // greedy: the likeliest
        });
        Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString(), string.Concat(content.Select(t => t.GetProperty("token").GetString())));
        // Streamed, each chunk carries its tokens' log-probabilities: together the same list.
        var sr = await h.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0,"logprobs":true,"top_logprobs":3,"stream":true}""", Encoding.UTF8, "application/json"));
        var streamed = (await sr.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Trim()).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("logprobs"))
            .Where(l => l.ValueKind == JsonValueKind.Object).SelectMany(l => l.GetProperty("content").EnumerateArray()).ToList();
        Assert.Equal(content.Select(t => t.GetProperty("token").GetString()), streamed.Select(t => t.GetProperty("token").GetString()));
        Assert.Equal(content.Select(t => t.GetProperty("logprob").GetDouble()), streamed.Select(t => t.GetProperty("logprob").GetDouble()));
    }

    [Fact]
    public async Task A_stream_has_the_role_first_usage_when_asked_and_done_last()
    {
        using var d = new TempDir();
        await using var s = await Start(d);
        using var h = Http(s);
        var r = await h.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true},"seed":1}""",
            Encoding.UTF8, "application/json"));
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        var events = (await r.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Trim()).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events.SkipLast(1).Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var usage = chunks[^1];
        Assert.Empty(usage.GetProperty("choices").EnumerateArray());
        var finish = chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString();
        Assert.Contains(finish, new[] { "stop", "length" });
        int pieces = chunks.Count(c => c.GetProperty("choices").GetArrayLength() == 1 && c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var x) && x.GetString()!.Length > 0);
        Assert.True(pieces <= usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));
    }

    [Fact]
    public async Task A_client_that_disconnects_stops_its_generation_and_a_full_queue_is_503()
    {
        using var d = new TempDir();
        await using var s = await Start(d, maxBatch: 1, queue: 1, longModel: true);
        using var h = Http(s);
        var longBody = """{"model":"long","messages":[{"role":"user","content":"Go on."}],"max_tokens":1024,"temperature":0,"stream":true}""";
        // A stream that runs long: read its first event, then hang up.
        using (var cts = new CancellationTokenSource())
        {
            var req = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(longBody, Encoding.UTF8, "application/json") };
            var resp = await h.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var stream = await resp.Content.ReadAsStreamAsync(cts.Token);
            var buf = new byte[64];
            Assert.True(await stream.ReadAsync(buf, cts.Token) > 0);

            // Meanwhile the queue (capacity 1) is full: 503 with the error body.
            var (st, e, full) = await Post(h, """{"model":"long","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, st);
            Assert.Equal("queue_full", e.GetProperty("code").GetString());
            Assert.True(full.Headers.Contains("Retry-After"));

            cts.Cancel();
            resp.Dispose();
        }
        var queue = s.Models["long"].Queue;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (queue.CancelledRequests == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(1, queue.CancelledRequests);   // the generation stopped, not ran to 1024 tokens
        // Serving after all of it.
        var health = JsonDocument.Parse(await h.GetStringAsync("/health")).RootElement;
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(1, health.GetProperty("requests").GetProperty("rejected").GetInt64());
        var ok = await h.PostAsync("/v1/chat/completions", new StringContent("""{"model":"long","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }
}
