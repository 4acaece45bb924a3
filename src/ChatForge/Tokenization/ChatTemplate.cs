using System.Text;

namespace ChatForge.Tokenization;

/// <summary>A chat message: role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// What a response answers. <see cref="Text"/>: the user's last message (a chat prompt) or the plain text the response
/// continues. <see cref="History"/>: for a chat prompt, the turns before it, so that a conversation is the state (TRL's
/// conversational "prompt" is the history, then the user's text). Two prompts are equal when their <see cref="Key"/>s are.
/// </summary>
public sealed record ChatPrompt(string Text, IReadOnlyList<ChatMessage> History)
{
    public ChatPrompt(string text) : this(text, Array.Empty<ChatMessage>()) { }

    public static implicit operator ChatPrompt(string text) => new(text);

    /// <summary>The history, then the text as a user message.</summary>
    public IReadOnlyList<ChatMessage> Messages => History.Append(new ChatMessage("user", Text)).ToList();

    /// <summary>The text alone, or with a history the rendered conversation: what identifies the prompt (splits, lookups).</summary>
    public string Key => History.Count == 0 ? Text : ChatTemplate.Render(Messages, addGenerationPrompt: false);

    /// <summary>The prompt as plain text, for a model without the chat template: the turns' contents, one per line.</summary>
    public string PlainText => History.Count == 0 ? Text : string.Join("\n", Messages.Select(m => m.Content));

    public bool Equals(ChatPrompt? other) => other is not null && Key == other.Key;
    public override int GetHashCode() => Key.GetHashCode(StringComparison.Ordinal);
    public override string ToString() => Key;
}

/// <summary>
/// Conversations as tokens, in the tokenizer's <see cref="ITokenizer.ChatFormat"/>: ChatML (each message is
/// &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n, a generation prompt is &lt;|im_start|&gt;assistant\n, and a template's default
/// system message comes first when the conversation has none) or Llama 3 (&lt;|begin_of_text|&gt;, then per message
/// &lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n + content.strip() + &lt;|eot_id|&gt;; Llama 3.1/3.2 always open with a system
/// header carrying "Cutting Knowledge Date" and "Today Date"). The text between two special tokens is encoded whole, so the
/// ids equal those of the rendered text encoded at once (as Hugging Face's apply_chat_template gives them); a token is
/// trained on when it overlaps assistant content or is the assistant's end-of-turn token.
/// </summary>
public static class ChatTemplate
{
    public static readonly string[] Roles = { "system", "user", "assistant" };

    /// <summary>Ids of the conversation and, per id, whether it is trained on (assistant content + its end-of-turn token).</summary>
    public static (int[] Ids, bool[] Train) Encode(ITokenizer tok, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var format = tok.ChatFormat;
        if (format.Kind == ChatFormatKind.None)
            throw new ChatForgeException("this tokenizer has no chat template (tokenizer_config.json has no 'chat_template'); it cannot encode a conversation");
        var ids = new List<int>();
        var train = new List<bool>();
        var specialText = tok.Specials.ToDictionary(p => p.Value, p => p.Key);
        var run = new List<Part>();
        foreach (var part in Parts(format, messages, addGenerationPrompt))
        {
            if (!part.Special) { run.Add(part); continue; }
            EncodeRun(tok, run, specialText, ids, train);
            ids.Add(tok.Id(part.Text));
            train.Add(part.Train);
        }
        EncodeRun(tok, run, specialText, ids, train);
        return (ids.ToArray(), train.ToArray());
    }

    /// <summary>
    /// Encodes the text between two special tokens at once. A token is trained on when its bytes overlap a trained part;
    /// the last part of a run reaches to the run's end (so a normalizer that changes the content's length cannot shift it).
    /// </summary>
    static void EncodeRun(ITokenizer tok, List<Part> run, Dictionary<int, string> specialText, List<int> ids, List<bool> train)
    {
        if (run.Count == 0) return;
        var spans = new List<(long Start, long End)>();
        long at = 0;
        for (int i = 0; i < run.Count; i++)
        {
            long len = Encoding.UTF8.GetByteCount(run[i].Text);
            if (run[i].Train) spans.Add((at, i == run.Count - 1 ? long.MaxValue : at + len));
            at += len;
        }
        long pos = 0;
        foreach (var id in tok.Encode(string.Concat(run.Select(p => p.Text))))
        {
            long len = tok.TokenBytes(id).Length;
            if (len == 0 && specialText.TryGetValue(id, out var s)) len = Encoding.UTF8.GetByteCount(s);
            ids.Add(id);
            train.Add(spans.Any(sp => pos < sp.End && pos + len > sp.Start));
            pos += len;
        }
        run.Clear();
    }

    /// <summary>
    /// A prompt as model input: with <paramref name="chat"/>, its history, its text as a user turn and the generation
    /// prompt; else the plain text, which the response continues (a prompt with a history needs the chat template).
    /// </summary>
    public static int[] EncodePrompt(ITokenizer tok, ChatPrompt prompt, bool chat)
    {
        if (chat) return Encode(tok, prompt.Messages, addGenerationPrompt: true).Ids;
        if (prompt.History.Count > 0) throw new ChatForgeException("a prompt with earlier turns needs the chat template (a chat model)");
        return tok.Encode(prompt.Text);
    }

    /// <summary>The rendered text in ChatML without a default system message (what ChatForge's chat_template produces;
    /// also a prompt's key).</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        Render(ChatFormat.ChatMl, messages, addGenerationPrompt);

    /// <summary>The rendered text in <paramref name="format"/> (what the Hugging Face chat_template produces).</summary>
    public static string Render(ChatFormat format, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        string.Concat(Parts(format, messages, addGenerationPrompt).Select(p => p.Text));

    readonly record struct Part(string Text, bool Special, bool Train = false);

    static List<Part> Parts(ChatFormat format, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        foreach (var m in messages)
            if (!Roles.Contains(m.Role)) throw new ChatForgeException($"unknown chat role '{m.Role}' (system, user, assistant)");
        var parts = new List<Part>();
        void Special(string s, bool train = false) => parts.Add(new Part(s, true, train));
        void Text(string s, bool train = false) => parts.Add(new Part(s, false, train));
        switch (format.Kind)
        {
            case ChatFormatKind.ChatMl:
                if (format.DefaultSystem is { } sys && (messages.Count == 0 || messages[0].Role != "system"))
                {
                    Special(SpecialTokens.ImStart); Text("system\n" + sys); Special(SpecialTokens.ImEnd); Text("\n");
                }
                foreach (var m in messages)
                {
                    bool a = m.Role == "assistant";
                    Special(SpecialTokens.ImStart); Text(m.Role + "\n"); Text(m.Content, a); Special(SpecialTokens.ImEnd, a); Text("\n");
                }
                if (addGenerationPrompt) { Special(SpecialTokens.ImStart); Text("assistant\n"); }
                break;
            case ChatFormatKind.Llama3:
                if (format.Bos is { } bos) Special(bos);
                int first = 0;
                if (format.DateString is { } date)
                {
                    // Llama 3.1/3.2: the system header is always there; a leading system message is its body.
                    var system = messages.Count > 0 && messages[0].Role == "system" ? JinjaTrim(messages[0].Content) : "";
                    if (messages.Count > 0 && messages[0].Role == "system") first = 1;
                    Special(ChatFormat.StartHeader); Text("system"); Special(ChatFormat.EndHeader);
                    Text($"\n\nCutting Knowledge Date: December 2023\nToday Date: {date}\n\n{system}"); Special(ChatFormat.EotId);
                }
                foreach (var m in messages.Skip(first))
                {
                    bool a = m.Role == "assistant";
                    Special(ChatFormat.StartHeader); Text(m.Role); Special(ChatFormat.EndHeader);
                    Text("\n\n"); Text(JinjaTrim(m.Content), a); Special(ChatFormat.EotId, a);
                }
                if (addGenerationPrompt) { Special(ChatFormat.StartHeader); Text("assistant"); Special(ChatFormat.EndHeader); Text("\n\n"); }
                break;
            default:
                throw new ChatForgeException("this tokenizer has no chat template; it cannot render a conversation");
        }
        return parts;
    }

    /// <summary>Jinja's trim filter: Python's str.strip(), whose whitespace also counts U+001C..U+001F.</summary>
    static string JinjaTrim(string s)
    {
        int a = 0, b = s.Length;
        while (a < b && IsPythonSpace(s[a])) a++;
        while (b > a && IsPythonSpace(s[b - 1])) b--;
        return s[a..b];
    }

    static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';
}
