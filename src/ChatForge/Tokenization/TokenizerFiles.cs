using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Util;

namespace ChatForge.Tokenization;

/// <summary>
/// A tokenizer directory: <c>chatforge_tokenizer.json</c> (kind and special ids) plus, for the BPE
/// kinds, Hugging Face's <c>vocab.json</c>, <c>merges.txt</c>, <c>tokenizer_config.json</c> (with a
/// ChatML chat_template) and <c>special_tokens_map.json</c>. A Hugging Face directory without our manifest loads too:
/// its <c>tokenizer.json</c> (<see cref="HfTokenizer"/>) when there is one, else GPT-2's vocab.json + merges.txt.
/// </summary>
public static class TokenizerFiles
{
    public const string Manifest = "chatforge_tokenizer.json";
    public const string Vocab = "vocab.json";
    public const string Merges = "merges.txt";

    /// <summary>The chat template (ChatML) in Hugging Face's Jinja form, saved in tokenizer_config.json.</summary>
    public const string ChatTemplateJinja =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    public static ITokenizer Create(string kind) => kind switch
    {
        "byte" => new ByteTokenizer(),
        "gpt2" => new Gpt2Tokenizer(),
        _ => throw new ChatForgeException($"unknown tokenizer kind '{kind}' (byte, gpt2, or a trained bpe directory)"),
    };

    public static bool Exists(string dir) =>
        File.Exists(Path.Combine(dir, Manifest)) || File.Exists(Path.Combine(dir, HfTokenizer.TokenizerJson))
        || (File.Exists(Path.Combine(dir, Vocab)) && File.Exists(Path.Combine(dir, Merges)));

    public static ITokenizer Load(string dir)
    {
        var manifest = Path.Combine(dir, Manifest);
        if (!File.Exists(manifest))
        {
            if (File.Exists(Path.Combine(dir, HfTokenizer.TokenizerJson)))
                return HfTokenizer.Load(dir);
            if (File.Exists(Path.Combine(dir, Vocab)) && File.Exists(Path.Combine(dir, Merges)))
                return LoadHuggingFaceBpe(dir);
            throw new ChatForgeException($"{dir}: no tokenizer ({Manifest}, {HfTokenizer.TokenizerJson}, or {Vocab} + {Merges}) found");
        }
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(manifest))!.AsObject(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException)
        { throw new ChatForgeException($"{manifest}: not valid JSON: {e.Message}", e); }
        var kind = (string?)root["kind"] ?? throw new ChatForgeException($"{manifest}: missing key 'kind'");
        switch (kind)
        {
            case "byte": return new ByteTokenizer();
            case "gpt2": return new Gpt2Tokenizer();
            case "hf": return HfTokenizer.Load(dir);
            case "bpe":
                var specials = root["special_tokens"]?.AsObject().ToDictionary(p => p.Key, p => (int)p.Value!)
                    ?? throw new ChatForgeException($"{manifest}: missing key 'special_tokens'");
                return new BpeFileTokenizer(Path.Combine(dir, Vocab), Path.Combine(dir, Merges), specials);
            default: throw new ChatForgeException($"{manifest}: unknown tokenizer kind '{kind}'");
        }
    }

    static ITokenizer LoadHuggingFaceBpe(string dir)
    {
        // A Hugging Face GPT-2 tokenizer directory: specials are the vocabulary's own <|...|> entries
        // plus added tokens from tokenizer_config.json when present.
        var vocabPath = Path.Combine(dir, Vocab);
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(vocabPath))!; }
        catch (JsonException e) { throw new ChatForgeException($"{vocabPath}: not valid JSON: {e.Message}", e); }
        var specials = vocab.Where(p => p.Key.StartsWith("<|", StringComparison.Ordinal) && p.Key.EndsWith("|>", StringComparison.Ordinal))
                            .ToDictionary(p => p.Key, p => p.Value);
        var cfg = Path.Combine(dir, "tokenizer_config.json");
        if (File.Exists(cfg) && JsonNode.Parse(File.ReadAllText(cfg)) is JsonObject c && c["added_tokens_decoder"] is JsonObject added)
            foreach (var (id, tok) in added)
                if ((string?)tok?["content"] is { } content) specials[content] = int.Parse(id, System.Globalization.CultureInfo.InvariantCulture);
        if (!specials.ContainsKey(SpecialTokens.EndOfText))
            throw new ChatForgeException($"{vocabPath}: no {SpecialTokens.EndOfText} token");
        return new BpeFileTokenizer(vocabPath, Path.Combine(dir, Merges), specials);
    }

    public static void WriteManifest(string dir, ITokenizer tok)
    {
        Directory.CreateDirectory(dir);
        var specials = new JsonObject();
        foreach (var (s, id) in tok.Specials.OrderBy(p => p.Value)) specials[s] = id;
        var root = new JsonObject { ["kind"] = tok.Kind, ["vocab_size"] = tok.VocabSize, ["special_tokens"] = specials };
        AtomicFile.WriteAllText(Path.Combine(dir, Manifest), root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (tok.Kind is not ("byte" or "hf")) WriteHuggingFaceConfig(dir, tok); // hf: its own files are copied as they are
    }

    static void WriteHuggingFaceConfig(string dir, ITokenizer tok)
    {
        var added = new JsonObject();
        foreach (var (s, id) in tok.Specials.OrderBy(p => p.Value))
            added[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = s, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false, ["single_word"] = false, ["special"] = true,
            };
        var config = new JsonObject
        {
            ["tokenizer_class"] = "GPT2Tokenizer",
            ["add_prefix_space"] = false,
            ["bos_token"] = SpecialTokens.EndOfText,
            ["eos_token"] = SpecialTokens.EndOfText,
            ["unk_token"] = SpecialTokens.EndOfText,
            ["model_max_length"] = 1024,
            ["added_tokens_decoder"] = added,
            ["additional_special_tokens"] = new JsonArray(tok.Specials.Keys.Where(k => k != SpecialTokens.EndOfText).Select(k => (JsonNode)k!).ToArray()),
            ["chat_template"] = ChatTemplateJinja,
        };
        var o = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        AtomicFile.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(o));
        var map = new JsonObject
        {
            ["bos_token"] = SpecialTokens.EndOfText, ["eos_token"] = SpecialTokens.EndOfText, ["unk_token"] = SpecialTokens.EndOfText,
            ["additional_special_tokens"] = new JsonArray(tok.Specials.Keys.Where(k => k != SpecialTokens.EndOfText).Select(k => (JsonNode)k!).ToArray()),
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), map.ToJsonString(o));
    }

    public static void WriteVocabAndMerges(string dir, IReadOnlyDictionary<string, int> vocab, IEnumerable<(string, string)> merges)
    {
        Directory.CreateDirectory(dir);
        var o = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        AtomicFile.WriteAllText(Path.Combine(dir, Vocab), JsonSerializer.Serialize(vocab, o));
        var sb = new StringBuilder("#version: 0.2\n");
        foreach (var (a, b) in merges) sb.Append(a).Append(' ').Append(b).Append('\n');
        AtomicFile.WriteAllText(Path.Combine(dir, Merges), sb.ToString());
    }
}
