using ChatForge.Checkpoints;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Serving;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Microsoft.Extensions.AI;
using Xunit;
using static TorchSharp.torch;
using AI = Microsoft.Extensions.AI;
using CF = ChatForge.Tokenization;

namespace ChatForge.Tests.Serve;

/// <summary>ChatForgeChatClient, the IChatClient that `chatforge chat` and `chatforge serve` use, and the batching queue under it.</summary>
public class ChatClientTests
{
    /// <summary>A tiny random byte-level model with a long context (slow enough to stop mid-answer), saved and loaded.</summary>
    public static string LongModel(string dir, int context = 1024)
    {
        manual_seed(11);
        using var m = new Gpt(TinyBase.Config with { NPositions = context });
        HfCheckpoint.Write(dir, m, new ByteTokenizer());
        return dir;
    }

    static List<AI.ChatMessage> Conversation(string user) => new() { new(ChatRole.System, "Be brief."), new(ChatRole.User, user) };

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public async Task Concurrent_requests_are_decoded_together_and_answer_as_they_would_alone(string family)
    {
        using var d = new TempDir();
        using var client = ChatForgeChatClient.Load(TinyBase.Create(d["m"], family: family), "tiny");
        var prompts = Enumerable.Range(0, 8).Select(i => $"Question {i}?").ToList();
        AI.ChatOptions Options(int i) => new() { Temperature = 1, Seed = 100 + i, MaxOutputTokens = 4 + i, StopSequences = i % 3 == 0 ? new[] { "e" } : null };
        // One after another…
        var alone = new List<ChatResponse>();
        for (int i = 0; i < prompts.Count; i++) alone.Add(await client.GetResponseAsync(Conversation(prompts[i]), Options(i)));
        long steps0 = client.Queue.Steps, rows0 = client.Queue.RowSteps;
        // …and all at once, from eight threads.
        var together = await Task.WhenAll(prompts.Select((p, i) => Task.Run(() => client.GetResponseAsync(Conversation(p), Options(i)))));
        for (int i = 0; i < prompts.Count; i++)
        {
            Assert.Equal(alone[i].Text, together[i].Text);
            Assert.Equal(alone[i].FinishReason, together[i].FinishReason);
            Assert.Equal(alone[i].Usage!.OutputTokenCount, together[i].Usage!.OutputTokenCount);
            Assert.True(together[i].Usage!.OutputTokenCount <= 4 + i);
            Assert.DoesNotContain("e", i % 3 == 0 ? together[i].Text : "");
        }
        // Fewer batches than requests: they shared forward passes.
        double meanRows = (double)(client.Queue.RowSteps - rows0) / (client.Queue.Steps - steps0);
        Assert.True(meanRows > 1.5, $"{meanRows:F2} requests per decoding step for {prompts.Count} concurrent requests");
        Assert.Equal(0, client.Queue.Pending);
    }

    [Fact]
    public async Task The_client_follows_the_chat_template_maps_options_and_reports_finish_and_usage()
    {
        using var d = new TempDir();
        var dir = TinyBase.Create(d["m"]);
        using var client = ChatForgeChatClient.Load(dir, "tiny");
        var (model, tok, _) = HfCheckpoint.Load(dir);
        var messages = new List<AI.ChatMessage>
        {
            new(ChatRole.User, "Ohio?"), new(ChatRole.Assistant, "Sure."), new(ChatRole.User, "Capital?"),   // short enough to fit whole
        };
        var options = new AI.ChatOptions { Temperature = 0, MaxOutputTokens = 6, Instructions = "Be short." };
        var r = await client.GetResponseAsync(messages, options);
        // The same as generating from the chat template's rendering of the conversation, the instructions as a system message.
        var ids = ChatTemplate.Encode(tok, new[] { new CF.ChatMessage("system", "Be short.") }
            .Concat(messages.Select(m => new CF.ChatMessage(m.Role.Value, m.Text))).ToList(), addGenerationPrompt: true).Ids;
        var expected = new TextGenerator(model, tok).Generate(new[] { ids }, new SamplingOptions { Temperature = 0, MaxNewTokens = 6, StopTokenIds = new[] { tok.Id(SpecialTokens.ImEnd) } })[0];
        Assert.Equal(expected.Text, r.Text);
        Assert.Equal(ids.Length, r.Usage!.InputTokenCount);
        Assert.Equal(expected.Tokens.Length, r.Usage.OutputTokenCount);
        Assert.Equal(expected.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop, r.FinishReason);
        Assert.Equal("tiny", r.ModelId);
        Assert.Equal(ChatRole.Assistant, r.Messages.Single().Role);

        // Streaming gives the same text, piece by piece, then the finish reason and the usage.
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, options)) updates.Add(u);
        Assert.Equal(r.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(r.FinishReason, updates[^1].FinishReason);
        Assert.Equal(r.Usage.OutputTokenCount, updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount);
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());

        // GetService: metadata, the client, its queue; nothing for a key.
        Assert.Equal("tiny", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Same(client, client.GetService<ChatForgeChatClient>());
        Assert.Same(client.Queue, client.GetService<GenerationQueue>());
        Assert.Null(client.GetService(typeof(ChatClientMetadata), "key"));

        // Out-of-range options and unsupported roles are argument errors naming the option.
        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(messages, new AI.ChatOptions { Temperature = 3 }));
        Assert.Equal("temperature", e.ParamName);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(new[] { new AI.ChatMessage(ChatRole.Tool, "x") }));
        // The token limit is clamped to the context.
        Assert.Equal(model.Context, client.Options(new AI.ChatOptions { MaxOutputTokens = 100_000 }).MaxNewTokens);
    }

    [Fact]
    public async Task A_long_conversation_drops_its_oldest_turns_as_chatforge_chat_does()
    {
        using var d = new TempDir();
        using var client = ChatForgeChatClient.Load(TinyBase.Create(d["m"]), "tiny");
        var messages = new List<AI.ChatMessage> { new(ChatRole.System, "S") };
        for (int i = 0; i < 12; i++) { messages.Add(new(ChatRole.User, $"turn {i} " + new string('x', 10))); messages.Add(new(ChatRole.Assistant, "ok " + i)); }
        messages.Add(new(ChatRole.User, "last"));
        var all = ChatForgeChatClient.Messages(messages);
        var (ids, dropped) = client.Prompt(all);
        Assert.True(dropped > 0 && dropped % 2 == 0);
        Assert.True(ids.Length <= client.Context - client.Context / 4);
        var kept = all.Take(1).Concat(all.Skip(1 + dropped)).ToList();   // the system message stays, the oldest exchanges go
        Assert.Equal(ChatTemplate.Encode(client.Tokenizer, kept, addGenerationPrompt: true).Ids, ids);
        var r = await client.GetResponseAsync(messages, new AI.ChatOptions { Temperature = 0, MaxOutputTokens = 3 });
        Assert.Equal(ids.Length, r.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task Leaving_a_stream_early_stops_its_generation()
    {
        using var d = new TempDir();
        using var client = ChatForgeChatClient.Load(LongModel(d["m"]), "long");
        var options = new AI.ChatOptions { Temperature = 0, MaxOutputTokens = 1024 };
        int pieces = 0;
        await foreach (var u in client.GetStreamingResponseAsync(Conversation("Go on."), options))
            if (++pieces == 2) break;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (client.Queue.CancelledRequests == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(1, client.Queue.CancelledRequests);
        Assert.Equal(0, client.Queue.Pending);
    }

    [Fact]
    public async Task A_request_joins_a_running_batch_and_leaves_it_when_done()
    {
        using var d = new TempDir();
        var (model, tok, _) = HfCheckpoint.Load(LongModel(d["m"]));
        using var queue = new GenerationQueue(model, tok, maxBatch: 4, capacity: 8);
        var longOne = new SamplingOptions { Temperature = 0, MaxNewTokens = 600, IgnoreEos = true };
        var running = queue.Enqueue(new RowRequest(new[] { 1, 2, 3 }, longOne));
        while (queue.Steps < 5) await Task.Delay(5);                       // the long row is decoding…
        var shortOne = await queue.Enqueue(new RowRequest(new[] { 7, 8, 9, 10, 11, 12 }, longOne with { MaxNewTokens = 4 }));
        Assert.False(running.IsCompleted);                                 // …the short one joined it and is done first
        Assert.Equal(4, shortOne.Tokens.Length);
        var first = await running;
        Assert.Equal(600, first.Tokens.Length);
        // Each got what it gets alone.
        var gen = new TextGenerator(model, tok);
        Assert.Equal(gen.Generate(new[] { new[] { 7, 8, 9, 10, 11, 12 } }, longOne with { MaxNewTokens = 4 })[0].Tokens, shortOne.Tokens);
        Assert.Equal(gen.Generate(new[] { new[] { 1, 2, 3 } }, longOne)[0].Tokens, first.Tokens);
    }

    [Fact]
    public async Task Rows_past_the_context_slide_as_they_do_alone()
    {
        using var d = new TempDir();
        var (model, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["m"]));   // a 128-token context
        using var queue = new GenerationQueue(model, tok);
        var o = new SamplingOptions { Temperature = 1, MaxNewTokens = 150, IgnoreEos = true };
        var prompts = new[] { Enumerable.Range(1, 100).ToArray(), new[] { 5, 6 }, Enumerable.Range(20, 60).ToArray() };
        var together = await Task.WhenAll(prompts.Select((p, i) => queue.Enqueue(new RowRequest(p, o with { Seed = i + 1, MaxNewTokens = 150 - 40 * i }))));
        var gen = new TextGenerator(model, tok);
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(gen.Generate(new[] { prompts[i] }, o with { Seed = i + 1, MaxNewTokens = 150 - 40 * i })[0].Tokens, together[i].Tokens);
    }

    [Fact]
    public async Task A_full_queue_refuses_more_requests()
    {
        using var d = new TempDir();
        var (model, tok, _) = HfCheckpoint.Load(LongModel(d["m"]));
        using var queue = new GenerationQueue(model, tok, maxBatch: 1, capacity: 2);
        using var cancel = new CancellationTokenSource();
        var o = new SamplingOptions { Temperature = 0, MaxNewTokens = 1024, IgnoreEos = true };
        var running = new[] { queue.Enqueue(new RowRequest(new[] { 1, 2 }, o, Cancel: cancel.Token)), queue.Enqueue(new RowRequest(new[] { 3 }, o, Cancel: cancel.Token)) };
        // Enqueue refuses at once (it throws before returning a task).
        var refused = Record.Exception(() => { _ = queue.Enqueue(new RowRequest(new[] { 4 }, o)); });
        Assert.IsType<QueueFullException>(refused);
        cancel.Cancel();
        Assert.All(await Task.WhenAll(running), c => Assert.Equal("cancelled", c.FinishReason));
        Assert.Equal(2, queue.CancelledRequests);
        // Room again.
        Assert.Equal(3, (await queue.Enqueue(new RowRequest(new[] { 5 }, o with { MaxNewTokens = 3 }))).Tokens.Length);
        // A request cancelled while it waits is done at once and frees its place, while the one before it still runs.
        using var waiting = new CancellationTokenSource();
        var first = queue.Enqueue(new RowRequest(new[] { 6 }, o with { MaxNewTokens = 400 }));
        var second = queue.Enqueue(new RowRequest(new[] { 7 }, o, Cancel: waiting.Token));
        waiting.Cancel();
        Assert.Equal("cancelled", (await second).FinishReason);
        Assert.False(first.IsCompleted);
        Assert.Equal(1, queue.Pending);
        Assert.Equal(3, queue.CancelledRequests);
        Assert.Equal(400, (await first).Tokens.Length);
    }
}
