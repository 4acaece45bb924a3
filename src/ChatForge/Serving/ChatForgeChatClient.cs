using System.Runtime.CompilerServices;
using System.Threading.Channels;
using ChatForge.Checkpoints;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using Microsoft.Extensions.AI;
using AI = Microsoft.Extensions.AI;

namespace ChatForge.Serving;

/// <summary>
/// A ChatForge chat model behind Microsoft.Extensions.AI's <see cref="IChatClient"/>: messages go through the model's
/// chat template with the context handling of `chatforge chat` (<see cref="ChatSession.Fit"/>: the oldest turns are
/// dropped first, system messages stay), <see cref="AI.ChatOptions"/> map to sampling options, and requests go through a
/// <see cref="GenerationQueue"/>, so concurrent calls are safe and decoded together. `chatforge chat` and
/// `chatforge serve` use it.
/// </summary>
/// <remarks>
/// Options: Temperature (0–2; default 0.8), TopP (0–1], TopK, MaxOutputTokens (default 64, clamped to the context),
/// StopSequences, Seed, Instructions (a system message first). AdditionalProperties["top_logprobs"] (an int, 0–20) asks
/// for log-probabilities: the <see cref="ChatResponse.RawRepresentation"/> is the <see cref="Completion"/> with them (streamed: each update's
/// RawRepresentation holds its tokens').
/// A response ends with <see cref="ChatFinishReason.Stop"/> (the end of turn or a stop sequence) or
/// <see cref="ChatFinishReason.Length"/> (the token limit).
/// </remarks>
public sealed class ChatForgeChatClient : IChatClient
{
    readonly ITokenizer _tok;
    readonly GenerationQueue _queue;
    readonly bool _ownsQueue, _ownsModel;

    /// <param name="queue">the queue to decode on, shared with other clients of the same model; null: a queue of its own</param>
    public ChatForgeChatClient(CausalLM model, ITokenizer tok, string modelId = "chatforge", GenerationQueue? queue = null)
        : this(model, tok, modelId, queue ?? new GenerationQueue(model, tok), ownsQueue: queue is null, ownsModel: false) { }

    ChatForgeChatClient(CausalLM model, ITokenizer tok, string modelId, GenerationQueue queue, bool ownsQueue, bool ownsModel)
    {
        _ownsModel = ownsModel;
        Model = model;
        _tok = tok;
        ModelId = modelId;
        _queue = queue;
        _ownsQueue = ownsQueue;
        Metadata = new ChatClientMetadata("chatforge", null, modelId);
    }

    /// <summary>A client for the chat model saved in <paramref name="dir"/> (a Hugging Face layout), with a queue of its own.</summary>
    public static ChatForgeChatClient Load(string dir, string? modelId = null, TorchSharp.torch.Device? device = null, int maxBatch = 8, int capacity = 64)
    {
        var (model, tok, _) = HfCheckpoint.Load(dir, device);
        return new ChatForgeChatClient(model, tok, modelId ?? Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)),
                                       new GenerationQueue(model, tok, maxBatch, capacity), ownsQueue: true, ownsModel: true);
    }

    public CausalLM Model { get; }
    public ITokenizer Tokenizer => _tok;
    public string ModelId { get; }
    public GenerationQueue Queue => _queue;
    public ChatClientMetadata Metadata { get; }
    /// <summary>The context, in tokens: the most a prompt may hold, and the limit on MaxOutputTokens.</summary>
    public int Context => Model.Context;

    public const double DefaultTemperature = 0.8, MaxTemperature = 2;
    public const int DefaultMaxOutputTokens = ChatSession.DefaultMaxNewTokens, MaxTopLogprobs = 20;

    /// <summary>The conversation as ChatForge messages: Instructions first as a system message; text content only.</summary>
    public static List<Tokenization.ChatMessage> Messages(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null)
    {
        var list = new List<Tokenization.ChatMessage>();
        if (options?.Instructions is { Length: > 0 } instructions) list.Add(new("system", instructions));
        int i = 0;
        foreach (var m in messages)
        {
            string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user" : m.Role == ChatRole.Assistant ? "assistant"
                : throw new ArgumentException($"messages[{i}]: role '{m.Role}' is not supported (system, user, assistant)");
            list.Add(new(role, m.Text));
            i++;
        }
        if (list.Count(m => m.Role != "system") == 0) throw new ArgumentException("messages: at least one user or assistant message is needed");
        return list;
    }

    /// <summary>The prompt ids for the next answer and how many messages were dropped to fit the context.</summary>
    public (int[] Ids, int Dropped) Prompt(IReadOnlyList<Tokenization.ChatMessage> messages) => ChatSession.Fit(_tok, messages, Context);

    /// <summary>Sampling options from chat options (the defaults above where unset); an out-of-range value is an ArgumentException naming it.</summary>
    public SamplingOptions Options(AI.ChatOptions? o)
    {
        double t = o?.Temperature ?? DefaultTemperature;
        if (!double.IsFinite(t) || t < 0 || t > MaxTemperature) throw new ArgumentOutOfRangeException("temperature", $"temperature must be between 0 and {MaxTemperature}, got {t}");
        double p = o?.TopP ?? 1.0;
        if (!double.IsFinite(p) || p <= 0 || p > 1) throw new ArgumentOutOfRangeException("top_p", $"top_p must be in (0, 1], got {p}");
        int k = o?.TopK ?? 0;
        if (k < 0) throw new ArgumentOutOfRangeException("top_k", $"top_k must be ≥ 0, got {k}");
        int max = o?.MaxOutputTokens ?? DefaultMaxOutputTokens;
        if (max < 1) throw new ArgumentOutOfRangeException("max_tokens", $"max_tokens must be ≥ 1, got {max}");
        return new SamplingOptions
        {
            Temperature = t, TopP = p, TopK = k, Seed = o?.Seed,
            MaxNewTokens = Math.Min(max, Context),
            StopStrings = o?.StopSequences?.Where(x => x.Length > 0).ToArray() ?? Array.Empty<string>(),
            StopTokenIds = new[] { _tok.EndOfTurnId() },
        };
    }

    static int TopLogprobs(AI.ChatOptions? o)
    {
        if (o?.AdditionalProperties?.TryGetValue("top_logprobs", out var v) != true) return -1;
        int n = Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture);
        if (n is < 0 or > MaxTopLogprobs) throw new ArgumentOutOfRangeException("top_logprobs", $"top_logprobs must be between 0 and {MaxTopLogprobs}, got {n}");
        return n;
    }

    static ChatFinishReason Finish(Completion c) => c.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop;

    static UsageDetails Usage(Completion c) => new() { InputTokenCount = c.PromptTokens, OutputTokenCount = c.Tokens.Length, TotalTokenCount = c.PromptTokens + c.Tokens.Length };

    static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (ids, _) = Prompt(Messages(messages, options));
        var c = await _queue.Enqueue(new RowRequest(ids, Options(options), TopLogprobs: TopLogprobs(options), Cancel: cancellationToken)).ConfigureAwait(false);
        if (c.FinishReason == "cancelled") throw new OperationCanceledException(cancellationToken);
        return new ChatResponse(new AI.ChatMessage(ChatRole.Assistant, c.Text))
        {
            ResponseId = NewId(), ModelId = ModelId, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(c), Usage = Usage(c), RawRepresentation = c,
        };
    }

    /// <summary>
    /// The answer as it is generated: one update per piece of text (text that could begin a stop sequence is held back
    /// until it does not), then a last update with the finish reason and the token counts (<see cref="UsageContent"/>,
    /// its RawRepresentation the <see cref="Completion"/>). With "top_logprobs" asked for, a piece's RawRepresentation is
    /// the log-probabilities of its tokens. Leaving the enumeration early, or cancelling, stops the generation.
    /// </summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AI.ChatMessage> messages, AI.ChatOptions? options = null,
                                                                                [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (ids, _) = Prompt(Messages(messages, options));
        var sampling = Options(options);
        int top = TopLogprobs(options);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pieces = Channel.CreateUnbounded<(string Text, IReadOnlyList<TokenLogprob>? Logprobs)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        IReadOnlyList<TokenLogprob>? pending = null;   // written and read on the queue's worker only
        var done = _queue.Enqueue(new RowRequest(ids, sampling, piece => { pieces.Writer.TryWrite((piece, pending)); pending = null; }, top, stop.Token,
                                                 lps => pending = lps));
        _ = done.ContinueWith(t =>
        {
            if (pending is { Count: > 0 }) pieces.Writer.TryWrite(("", pending));   // the last tokens' log-probabilities (a stop string's)
            pieces.Writer.TryComplete(t.Exception?.InnerException);
        }, TaskScheduler.Default);
        string id = NewId();
        var created = DateTimeOffset.UtcNow;
        try
        {
            await foreach (var (piece, lps) in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = id, MessageId = id, ModelId = ModelId, CreatedAt = created, RawRepresentation = lps };
            var c = await done.ConfigureAwait(false);
            if (c.FinishReason == "cancelled") throw new OperationCanceledException(cancellationToken);
            yield return new ChatResponseUpdate(ChatRole.Assistant, new List<AIContent> { new UsageContent(Usage(c)) })
            {
                ResponseId = id, MessageId = id, ModelId = ModelId, CreatedAt = created, FinishReason = Finish(c), RawRepresentation = c,
            };
        }
        finally
        {
            stop.Cancel();   // a consumer that stopped reading ends the generation at its next token
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(_queue)) return _queue;
        if (serviceType.IsInstanceOfType(Model)) return Model;
        return null;
    }

    public void Dispose()
    {
        if (_ownsQueue) _queue.Dispose();
        if (_ownsModel) Model.Dispose();
    }
}
