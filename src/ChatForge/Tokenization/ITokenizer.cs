namespace ChatForge.Tokenization;

/// <summary>
/// Text ⇄ token ids. Every tokenizer is lossless on valid Unicode text (Decode(Encode(s)) == s; for a
/// Hugging Face tokenizer with an NFC normalizer, == NFC(s)). ChatForge's own kinds carry the special tokens of
/// <see cref="SpecialTokens"/>; a Hugging Face tokenizer carries its added tokens. Special-token strings that
/// appear in the text are encoded as their special ids, as Hugging Face tokenizers do.
/// </summary>
public interface ITokenizer
{
    /// <summary>"byte", "gpt2", "bpe" or "hf" (a Hugging Face tokenizer.json).</summary>
    string Kind { get; }

    /// <summary>Number of ids, special tokens included (the model's vocab_size must be at least this).</summary>
    int VocabSize { get; }

    /// <summary>Special token string → id.</summary>
    IReadOnlyDictionary<string, int> Specials { get; }

    int[] Encode(string text);

    string Decode(IEnumerable<int> ids);

    /// <summary>The raw bytes a (non-special) token stands for; empty for special tokens.
    /// Used for exact nats-per-byte and for streaming UTF-8 decoding.</summary>
    ReadOnlySpan<byte> TokenBytes(int id);

    /// <summary>Writes the tokenizer files into <paramref name="dir"/> (loadable by <see cref="TokenizerFiles.Load"/>).</summary>
    void Save(string dir);

    /// <summary>How a conversation is laid out in tokens (<see cref="ChatTemplate"/> follows it). ChatForge's own
    /// tokenizers use ChatML without a default system message; a Hugging Face tokenizer takes it from its chat_template.</summary>
    ChatFormat ChatFormat => ChatFormat.ChatMl;

    /// <summary>The end-of-sequence token: documents are separated by it, padding uses its id, and an empty prompt is
    /// conditioned on it. ChatForge's own tokenizers: &lt;|endoftext|&gt;; a Hugging Face tokenizer: tokenizer_config.json's eos_token.</summary>
    string EosToken => SpecialTokens.EndOfText;
}

/// <summary>The special tokens ChatForge's own tokenizers (byte, gpt2, bpe) have, in id order after the regular vocabulary.</summary>
public static class SpecialTokens
{
    public const string EndOfText = "<|endoftext|>";
    /// <summary>ChatML role markers: &lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n.</summary>
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";

    public static readonly IReadOnlyList<string> All = new[] { EndOfText, ImStart, ImEnd };

    public static int Id(this ITokenizer tokenizer, string special) =>
        tokenizer.Specials.TryGetValue(special, out var id) ? id
            : throw new ChatForgeException($"tokenizer has no special token {special}");

    /// <summary>The id of <see cref="ITokenizer.EosToken"/>.</summary>
    public static int EosId(this ITokenizer tokenizer) => tokenizer.Id(tokenizer.EosToken);

    /// <summary>The id of the token that closes a chat turn (&lt;|im_end|&gt; in ChatML, &lt;|eot_id|&gt; in Llama 3): what an
    /// assistant turn ends with, and so the stop token of chat generation.</summary>
    public static int EndOfTurnId(this ITokenizer tokenizer) =>
        tokenizer.ChatFormat.Kind == ChatFormatKind.None
            ? throw new ChatForgeException("this tokenizer has no chat template (tokenizer_config.json has no 'chat_template'), so it has no end-of-turn token")
            : tokenizer.Id(tokenizer.ChatFormat.EndOfTurn);

    /// <summary>Splits text around occurrences of the special-token strings.</summary>
    public static IEnumerable<(string Piece, int? SpecialId)> SplitSpecials(string text, IReadOnlyDictionary<string, int> specials)
    {
        int start = 0;
        while (start < text.Length)
        {
            int best = -1; string? which = null;
            foreach (var s in specials.Keys)
            {
                int i = text.IndexOf(s, start, StringComparison.Ordinal);
                if (i >= 0 && (best < 0 || i < best || (i == best && s.Length > which!.Length))) { best = i; which = s; }
            }
            if (best < 0) { yield return (text[start..], null); yield break; }
            if (best > start) yield return (text[start..best], null);
            yield return (which!, specials[which!]);
            start = best + which!.Length;
        }
    }
}
