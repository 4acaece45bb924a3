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
/// ChatML, the one chat template used for training, evaluation and chat (and saved as the
/// Hugging Face chat_template): each message is &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n, and a
/// generation prompt is &lt;|im_start|&gt;assistant\n. The role markers are special tokens. Each piece is
/// tokenized on its own and the ids concatenated, so the trained-on span (assistant content and
/// its &lt;|im_end|&gt;) is exact.
/// </summary>
public static class ChatTemplate
{
    public static readonly string[] Roles = { "system", "user", "assistant" };

    /// <summary>Ids of the conversation and, per id, whether it is trained on (assistant content + &lt;|im_end|&gt;).</summary>
    public static (int[] Ids, bool[] Train) Encode(ITokenizer tok, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var ids = new List<int>();
        var train = new List<bool>();
        int start = tok.Id(SpecialTokens.ImStart), end = tok.Id(SpecialTokens.ImEnd);
        void Add(IEnumerable<int> xs, bool t) { foreach (var x in xs) { ids.Add(x); train.Add(t); } }
        foreach (var m in messages)
        {
            if (!Roles.Contains(m.Role)) throw new ChatForgeException($"unknown chat role '{m.Role}' (system, user, assistant)");
            bool assistant = m.Role == "assistant";
            Add(new[] { start }, false);
            Add(tok.Encode(m.Role + "\n"), false);
            Add(tok.Encode(m.Content), assistant);
            Add(new[] { end }, assistant);
            Add(tok.Encode("\n"), false);
        }
        if (addGenerationPrompt)
        {
            Add(new[] { start }, false);
            Add(tok.Encode("assistant\n"), false);
        }
        return (ids.ToArray(), train.ToArray());
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

    /// <summary>The rendered text (what the Jinja chat_template produces).</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        string.Concat(messages.Select(m => $"{SpecialTokens.ImStart}{m.Role}\n{m.Content}{SpecialTokens.ImEnd}\n"))
        + (addGenerationPrompt ? $"{SpecialTokens.ImStart}assistant\n" : "");
}
