using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Generation;

/// <summary>
/// A multi-turn conversation with a chat model: the history is rendered with the chat template on
/// every turn; when it no longer fits the context with <see cref="AnswerRoom"/> tokens to spare, the
/// oldest exchanges are dropped (the system message stays). The room is a quarter of the context, not
/// the answer's token limit, so the history kept does not depend on the sampling options (an answer
/// longer than the room slides the window as it grows). Answers end at &lt;|im_end|&gt; and stream as
/// they are generated.
/// </summary>
public sealed class ChatSession
{
    readonly TextGenerator _gen;
    readonly ITokenizer _tok;
    readonly int _context;
    readonly List<ChatMessage> _history = new();

    public ChatSession(CausalLM model, ITokenizer tok, SamplingOptions options)
    {
        _gen = new TextGenerator(model, tok);
        _tok = tok;
        _context = model.Context;
        Options = options with { StopTokenIds = options.StopTokenIds.Append(tok.EndOfTurnId()).ToArray() };
    }

    /// <summary>The answer-token limit of `chatforge chat` and the multi-turn evaluation.</summary>
    public const int DefaultMaxNewTokens = 64;
    /// <summary>Greedy answers: what `chatforge chat --temperature 0` and the multi-turn evaluation use.</summary>
    public static SamplingOptions Greedy => new() { Temperature = 0, MaxNewTokens = DefaultMaxNewTokens };

    public SamplingOptions Options { get; }
    /// <summary>Tokens kept free for the answer when the history is fitted into the context.</summary>
    public int AnswerRoom => Math.Max(1, _context / 4);
    public string? System { get; set; }
    public IReadOnlyList<ChatMessage> History => _history;
    /// <summary>Turns dropped from the front of the history so far to fit the context.</summary>
    public int DroppedMessages { get; private set; }

    public void Reset() { _history.Clear(); DroppedMessages = 0; }

    /// <summary>Appends a message to the history as it stands (a conversation given whole, or an answer written elsewhere).</summary>
    public void Add(ChatMessage message)
    {
        if (!ChatTemplate.Roles.Contains(message.Role) || message.Role == "system")
            throw new ChatForgeException($"a conversation message's role must be user or assistant, got '{message.Role}'");
        _history.Add(message);
    }

    /// <summary>The prompt ids for the next answer, after dropping the oldest turns that do not fit.</summary>
    public int[] PromptFor(string user)
    {
        _history.Add(new ChatMessage("user", user));
        var all = (System is { } s ? new[] { new ChatMessage("system", s) } : Array.Empty<ChatMessage>()).Concat(_history).ToList();
        var (ids, dropped) = Fit(_tok, all, _context);
        _history.RemoveRange(0, dropped);
        DroppedMessages += dropped;
        return ids;
    }

    /// <summary>
    /// A conversation as the prompt for its next answer, with the context handling of `chatforge chat`: while it does not
    /// fit the context with a quarter of it to spare for the answer, the oldest exchange (a user message and the assistant
    /// answer after it) is dropped; system messages and the last message stay (a single over-long message is cut on the
    /// left by the generator). Returns the ids and how many messages were dropped, all from the front of the non-system ones.
    /// </summary>
    public static (int[] Ids, int Dropped) Fit(ITokenizer tok, IReadOnlyList<ChatMessage> messages, int context)
    {
        var kept = messages.ToList();
        int dropped = 0, room = context - Math.Max(1, context / 4);
        while (true)
        {
            var ids = ChatTemplate.Encode(tok, kept, addGenerationPrompt: true).Ids;
            int first = kept.FindIndex(m => m.Role != "system");
            if (ids.Length <= room || first < 0 || kept.Count(m => m.Role != "system") <= 1) return (ids, dropped);
            int n = first + 2 < kept.Count && kept[first + 1].Role == "assistant" ? 2 : 1;
            kept.RemoveRange(first, n);
            dropped += n;
        }
    }

    /// <summary>Streams the assistant's answer to <paramref name="user"/>; the answer joins the history when complete.</summary>
    public IEnumerable<string> Ask(string user)
    {
        var prompt = PromptFor(user);
        var answer = new System.Text.StringBuilder();
        foreach (var piece in _gen.Stream(prompt, Options))
        {
            answer.Append(piece);
            yield return piece;
        }
        _history.Add(new ChatMessage("assistant", answer.ToString().Trim()));
    }
}
