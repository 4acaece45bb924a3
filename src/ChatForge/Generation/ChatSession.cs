using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Generation;

/// <summary>
/// A multi-turn conversation with a chat model: the history is rendered with the chat template on
/// every turn; when it no longer fits the context (with room for the answer), the oldest turns are
/// dropped (the system message stays). Answers end at &lt;|im_end|&gt; and stream as they are generated.
/// </summary>
public sealed class ChatSession
{
    readonly TextGenerator _gen;
    readonly ITokenizer _tok;
    readonly int _context;
    readonly List<ChatMessage> _history = new();

    public ChatSession(Gpt model, ITokenizer tok, SamplingOptions options)
    {
        _gen = new TextGenerator(model, tok);
        _tok = tok;
        _context = model.Config.NPositions;
        Options = options with { StopTokenIds = options.StopTokenIds.Append(tok.Id(SpecialTokens.ImEnd)).ToArray() };
    }

    public SamplingOptions Options { get; }
    public string? System { get; set; }
    public IReadOnlyList<ChatMessage> History => _history;
    /// <summary>Turns dropped from the front of the history so far to fit the context.</summary>
    public int DroppedMessages { get; private set; }

    public void Reset() { _history.Clear(); DroppedMessages = 0; }

    /// <summary>The prompt ids for the next answer, after dropping the oldest turns that do not fit.</summary>
    public int[] PromptFor(string user)
    {
        _history.Add(new ChatMessage("user", user));
        int room = Math.Max(1, _context - Options.MaxNewTokens);
        while (true)
        {
            var msgs = (System is { } s ? new[] { new ChatMessage("system", s) } : Array.Empty<ChatMessage>()).Concat(_history).ToList();
            var ids = ChatTemplate.Encode(_tok, msgs, addGenerationPrompt: true).Ids;
            if (ids.Length <= room || _history.Count <= 1) return ids; // a single over-long message is cut on the left by the generator
            // Drop the oldest exchange (a user message and the assistant answer after it).
            int n = _history.Count > 2 && _history[1].Role == "assistant" ? 2 : 1;
            _history.RemoveRange(0, n);
            DroppedMessages += n;
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
