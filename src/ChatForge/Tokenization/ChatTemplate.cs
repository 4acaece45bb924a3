namespace ChatForge.Tokenization;

/// <summary>A chat message: role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);

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
    /// A prompt as model input: with <paramref name="chat"/>, one user turn and the generation prompt;
    /// else the plain text, which the response continues.
    /// </summary>
    public static int[] EncodePrompt(ITokenizer tok, string prompt, bool chat) =>
        chat ? Encode(tok, new[] { new ChatMessage("user", prompt) }, addGenerationPrompt: true).Ids : tok.Encode(prompt);

    /// <summary>The rendered text (what the Jinja chat_template produces).</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        string.Concat(messages.Select(m => $"{SpecialTokens.ImStart}{m.Role}\n{m.Content}{SpecialTokens.ImEnd}\n"))
        + (addGenerationPrompt ? $"{SpecialTokens.ImStart}assistant\n" : "");
}
