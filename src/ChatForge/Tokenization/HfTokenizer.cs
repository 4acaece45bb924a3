using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;
using ChatForge.Util;

namespace ChatForge.Tokenization;

/// <summary>
/// A Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen2/2.5, SmolLM2) with its tokenizer_config.json.
/// Encoding follows Hugging Face tokenizers step by step: added tokens are split out of the raw text (leftmost, longest;
/// those marked "normalized" after normalizing), the rest is normalized (NFC or nothing), pre-tokenized (Split with the
/// model's regex, Digits, ByteLevel with or without GPT-2's regex), mapped to GPT-2's byte alphabet, and each piece goes
/// through Microsoft.ML.Tokenizers' BpeTokenizer (merges by rank), unless ignore_merges finds the whole piece in the
/// vocabulary. <see cref="Encode"/> never adds the post-processor's tokens (Llama 3's &lt;|begin_of_text|&gt;): it is
/// encode(text, add_special_tokens=False), which is how chat templates and ChatForge's data use it; a template's BOS comes
/// from the chat format. Anything else in the file is a one-line error naming the key.
/// </summary>
public sealed class HfTokenizer : ITokenizer
{
    public const string TokenizerJson = "tokenizer.json";
    public const string ConfigJson = "tokenizer_config.json";
    public const string SpecialTokensMapJson = "special_tokens_map.json";
    public const string ChatTemplateJinja = "chat_template.jinja";

    sealed record AddedToken(string Content, int Id, bool Special, bool Normalized);

    readonly Dictionary<string, byte[]> _files = new();   // the Hugging Face files as loaded, written back unchanged by Save
    readonly BpeTokenizer _bpe;
    readonly Dictionary<string, int>? _wholeWords; // ignore_merges: byte-level word → id
    readonly bool _nfc;
    readonly AddedTokenSplitter _raw, _normalized;
    readonly PreTokenizerStep[] _steps;
    readonly Dictionary<int, AddedToken> _addedById;
    readonly Dictionary<string, int> _specials;
    readonly byte[]?[] _bytes; // id → the bytes it decodes to (special tokens included)

    public string Kind => "hf";
    public int VocabSize => _bytes.Length;
    public IReadOnlyDictionary<string, int> Specials => _specials;
    public ChatFormat ChatFormat { get; }
    public string EosToken { get; }
    /// <summary>The token the post-processor would put first (Llama 3: &lt;|begin_of_text|&gt;), or null.</summary>
    public string? PostProcessorBos { get; }

    HfTokenizer(string dir, JsonObject tj, JsonObject? config, string? templateFile)
    {
        foreach (var name in new[] { TokenizerJson, ConfigJson, SpecialTokensMapJson, ChatTemplateJinja })
            if (File.Exists(Path.Combine(dir, name))) _files[name] = File.ReadAllBytes(Path.Combine(dir, name));
        var t = new Reader(TokenizerJson);
        var model = t.Object(tj, "model");
        var type = t.String(model, "model.type", "type");
        if (type != "BPE") throw t.Unsupported("model.type", type, "only BPE");
        foreach (var (key, allowed) in new[] { ("continuing_subword_prefix", ""), ("end_of_word_suffix", "") })
            if (t.OptString(model, $"model.{key}", key) is { Length: > 0 } v) throw t.Unsupported($"model.{key}", v, "null or \"\"");
        if (model["dropout"] is JsonValue dv && dv.GetValueKind() != JsonValueKind.Null && t.Number(model, "model.dropout", "dropout") != 0)
            throw t.Unsupported("model.dropout", model["dropout"]!.ToJsonString(), "null");
        if (t.OptBool(model, "model.byte_fallback", "byte_fallback") == true) throw t.Unsupported("model.byte_fallback", "true", "false (a byte-level BPE needs no fallback)");
        bool ignoreMerges = t.OptBool(model, "model.ignore_merges", "ignore_merges") ?? false;

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, idNode) in t.Object(model, "model.vocab", "vocab"))
            vocab[token] = t.Int(idNode, $"model.vocab['{token}']");
        var merges = new List<string>();
        var mergesNode = t.Array(model, "model.merges", "merges");
        for (int i = 0; i < mergesNode.Count; i++)
        {
            var path = $"model.merges[{i}]";
            string a, b;
            if (mergesNode[i] is JsonArray pair)
            {
                if (pair.Count != 2) throw t.Bad(path, "must be a pair [\"a\", \"b\"]");
                a = t.Str(pair[0], path + "[0]"); b = t.Str(pair[1], path + "[1]");
            }
            else
            {
                var line = t.Str(mergesNode[i], path);
                var parts = line.Split(' ');
                if (parts.Length != 2) throw t.Bad(path, $"= '{line}' must be two tokens separated by one space");
                (a, b) = (parts[0], parts[1]);
            }
            if (a.Length == 0 || b.Length == 0 || a.Contains(' ') || b.Contains(' '))
                throw t.Bad(path, "has an empty token or a token with a space (not a byte-level merge)");
            merges.Add(a + " " + b);
        }

        var added = new List<AddedToken>();
        if (tj["added_tokens"] is JsonArray addedNode)
            for (int i = 0; i < addedNode.Count; i++)
            {
                var path = $"added_tokens[{i}]";
                var o = addedNode[i] as JsonObject ?? throw t.Bad(path, "must be an object");
                var content = t.String(o, path + ".content", "content");
                foreach (var flag in new[] { "lstrip", "rstrip", "single_word" })
                    if (t.OptBool(o, $"{path}.{flag}", flag) == true) throw t.Unsupported($"{path}.{flag}", "true", "false");
                added.Add(new AddedToken(content, t.Int(o["id"], path + ".id"), t.OptBool(o, path + ".special", "special") ?? false,
                    t.OptBool(o, path + ".normalized", "normalized") ?? false));
            }
        else if (tj["added_tokens"] is not null && tj["added_tokens"]!.GetValueKind() != JsonValueKind.Null)
            throw t.Bad("added_tokens", "must be an array");

        _nfc = tj["normalizer"] switch
        {
            null => false,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => false,
            JsonObject n => t.String(n, "normalizer.type", "type") is var nt && nt == "NFC" ? true : throw t.Unsupported("normalizer.type", nt, "null or NFC"),
            _ => throw t.Bad("normalizer", "must be an object or null"),
        };
        _steps = PreTokenizerSteps(t, tj["pre_tokenizer"]);
        PostProcessorBos = PostProcessor(t, tj["post_processor"]);
        var decoder = tj["decoder"] as JsonObject ?? throw t.Bad("decoder", "must be a ByteLevel decoder");
        if (t.String(decoder, "decoder.type", "type") is var dt && dt != "ByteLevel") throw t.Unsupported("decoder.type", dt, "ByteLevel");
        // "truncation" and "padding" are ignored, as transformers resets them on every call.

        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges, ByteLevel = true });
        }
        catch (InvalidOperationException e)
        {
            throw new ChatForgeException($"{TokenizerJson}: 'model.merges' do not fit 'model.vocab': {e.Message}", e);
        }
        _wholeWords = ignoreMerges ? vocab : null;

        int size = Math.Max(vocab.Values.DefaultIfEmpty(-1).Max(), added.Select(a => a.Id).DefaultIfEmpty(-1).Max()) + 1;
        _bytes = new byte[size][];
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw t.Bad($"model.vocab['{token}']", $"= {id} is negative");
            var bytes = new byte[token.Length];
            for (int i = 0; i < token.Length; i++)
                bytes[i] = ByteLevel.CharToByte.TryGetValue(token[i], out var by) ? by
                    : throw t.Bad($"model.vocab['{token}']", "is not in GPT-2's byte-level alphabet (not a byte-level BPE)");
            _bytes[id] = bytes;
        }
        _addedById = new Dictionary<int, AddedToken>();
        _specials = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var a in added)
        {
            if (a.Id < 0) throw t.Bad($"added_tokens[{added.IndexOf(a)}].id", $"= {a.Id} is negative");
            _addedById[a.Id] = a;
            _bytes[a.Id] = DecoderBytes(a.Content);
            if (a.Special) _specials[a.Content] = a.Id;
        }
        _raw = new AddedTokenSplitter(added.Where(a => !a.Normalized).Select(a => (a.Content, a.Id)));
        _normalized = new AddedTokenSplitter(added.Where(a => a.Normalized).Select(a => (a.Content, a.Id)));

        // tokenizer_config.json: eos_token, bos_token, chat_template (or chat_template.jinja beside it).
        var c = new Reader(ConfigJson);
        EosToken = c.TokenString(config, "eos_token")
            ?? (_specials.ContainsKey(SpecialTokens.EndOfText) ? SpecialTokens.EndOfText
                : throw c.Bad("eos_token", config is null ? "is needed (no tokenizer_config.json, and no <|endoftext|> token)" : "is missing"));
        if (!_specials.ContainsKey(EosToken)) throw c.Bad("eos_token", $"= '{EosToken}' is not a special token of {TokenizerJson}");
        var bos = c.TokenString(config, "bos_token");
        string? template = null;
        if (config?["chat_template"] is JsonNode ct && ct.GetValueKind() != JsonValueKind.Null)
            template = ct.GetValueKind() == JsonValueKind.String ? (string)ct!
                : throw c.Unsupported("chat_template", ct.GetValueKind().ToString(), "one template string (named templates are not supported)");
        else if (templateFile is not null) template = templateFile;
        ChatFormat = ChatFormat.FromTemplate(template, bos, config?["chat_template"] is null && templateFile is not null ? ChatTemplateJinja : ConfigJson);
        foreach (var s in ChatFormat.Specials)
            if (!_specials.ContainsKey(s))
                throw c.Bad("chat_template", $"writes {s}, which is not a special token of {TokenizerJson}");
    }

    /// <summary>Loads <c>tokenizer.json</c> and, when present, <c>tokenizer_config.json</c> (and <c>chat_template.jinja</c>) from <paramref name="dir"/>.</summary>
    public static HfTokenizer Load(string dir)
    {
        var path = Path.Combine(dir, TokenizerJson);
        if (!File.Exists(path)) throw new ChatForgeException($"{dir}: no {TokenizerJson}");
        var tj = ParseObject(path, TokenizerJson);
        var cfgPath = Path.Combine(dir, ConfigJson);
        var config = File.Exists(cfgPath) ? ParseObject(cfgPath, ConfigJson) : null;
        var jinja = Path.Combine(dir, ChatTemplateJinja);
        return new HfTokenizer(dir, tj, config, File.Exists(jinja) ? File.ReadAllText(jinja) : null);
    }

    static JsonObject ParseObject(string path, string name)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ChatForgeException($"{name}: not a JSON object");
        }
        catch (JsonException e) { throw new ChatForgeException($"{name}: not valid JSON: {e.Message}", e); }
    }

    static PreTokenizerStep[] PreTokenizerSteps(Reader t, JsonNode? node)
    {
        var o = node as JsonObject ?? throw t.Bad("pre_tokenizer", "must be a ByteLevel pre-tokenizer or a Sequence ending in one (a byte-level BPE)");
        var list = t.String(o, "pre_tokenizer.type", "type") == "Sequence"
            ? t.Array(o, "pre_tokenizer.pretokenizers", "pretokenizers").Select((s, i) => (Node: s, Path: $"pre_tokenizer.pretokenizers[{i}]")).ToList()
            : new() { (Node: (JsonNode?)o, Path: "pre_tokenizer") };
        var steps = new List<PreTokenizerStep>();
        for (int i = 0; i < list.Count; i++)
        {
            var (n, path) = list[i];
            var s = n as JsonObject ?? throw t.Bad(path, "must be an object");
            var type = t.String(s, path + ".type", "type");
            switch (type)
            {
                case "ByteLevel":
                    if (i != list.Count - 1) throw t.Bad(path, "ByteLevel must be the last pre-tokenizer");
                    if (t.OptBool(s, path + ".add_prefix_space", "add_prefix_space") == true)
                        throw t.Unsupported(path + ".add_prefix_space", "true", "false (a prefix space would change every text)");
                    if (t.OptBool(s, path + ".use_regex", "use_regex") ?? true)
                        steps.Add(new PreTokenizerStep.RegexIsolated(new CodePointRegex(ByteLevel.Gpt2Pattern)));
                    break;
                case "Split":
                    var behavior = t.String(s, path + ".behavior", "behavior");
                    if (behavior != "Isolated") throw t.Unsupported(path + ".behavior", behavior, "Isolated");
                    if (t.OptBool(s, path + ".invert", "invert") == true) throw t.Unsupported(path + ".invert", "true", "false");
                    var pattern = t.Object(s, path + ".pattern", "pattern");
                    string regex = pattern["Regex"] is { } r ? t.Str(r, path + ".pattern.Regex")
                        : pattern["String"] is { } str ? System.Text.RegularExpressions.Regex.Escape(t.Str(str, path + ".pattern.String"))
                        : throw t.Bad(path + ".pattern", "must have 'Regex' or 'String'");
                    CodePointRegex cpr;
                    try { cpr = new CodePointRegex(regex); }
                    catch (ArgumentException e) { throw t.Bad(path + ".pattern.Regex", $"is not a pattern .NET can read: {e.Message}"); }
                    steps.Add(new PreTokenizerStep.RegexIsolated(cpr));
                    break;
                case "Digits":
                    steps.Add(new PreTokenizerStep.Digits(t.OptBool(s, path + ".individual_digits", "individual_digits") ?? false));
                    break;
                default:
                    throw t.Unsupported(path + ".type", type, "ByteLevel, Split, Digits or a Sequence of them");
            }
            if (i == list.Count - 1 && type != "ByteLevel")
                throw t.Bad(path, "the last pre-tokenizer must be ByteLevel (a byte-level BPE)");
        }
        return steps.ToArray();
    }

    /// <summary>Accepts the post-processors whose only effect on ids is a leading special token (returned), or none.</summary>
    static string? PostProcessor(Reader t, JsonNode? node)
    {
        if (node is null || node.GetValueKind() == JsonValueKind.Null) return null;
        var o = node as JsonObject ?? throw t.Bad("post_processor", "must be an object or null");
        var list = t.String(o, "post_processor.type", "type") == "Sequence"
            ? t.Array(o, "post_processor.processors", "processors").Select((s, i) => (Node: s, Path: $"post_processor.processors[{i}]")).ToList()
            : new() { (Node: (JsonNode?)o, Path: "post_processor") };
        string? bos = null;
        foreach (var (n, path) in list)
        {
            var p = n as JsonObject ?? throw t.Bad(path, "must be an object");
            var type = t.String(p, path + ".type", "type");
            if (type == "ByteLevel") continue; // offsets only
            if (type != "TemplateProcessing")
                throw t.Unsupported(path + ".type", type, "ByteLevel, or a TemplateProcessing that only puts a special token first");
            var single = t.Array(p, path + ".single", "single");
            for (int i = 0; i < single.Count; i++)
            {
                var item = single[i] as JsonObject ?? throw t.Bad($"{path}.single[{i}]", "must be an object");
                if (item["Sequence"] is JsonObject) { if (i != single.Count - 1) throw t.Unsupported($"{path}.single[{i + 1}]", item.ToJsonString(), "nothing after the sequence (ChatForge adds no trailing tokens)"); continue; }
                if (item["SpecialToken"] is JsonObject st && i == 0) { bos = t.String(st, $"{path}.single[0].SpecialToken.id", "id"); continue; }
                throw t.Unsupported($"{path}.single[{i}]", item.ToJsonString(), "one leading special token and the sequence");
            }
        }
        return bos;
    }

    /// <summary>Hugging Face's ByteLevel decoder on a whole token string: through GPT-2's byte alphabet when every character
    /// is in it, else the string's own UTF-8 bytes.</summary>
    static byte[] DecoderBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
            if (!ByteLevel.CharToByte.TryGetValue(token[i], out bytes[i])) return Encoding.UTF8.GetBytes(token);
        return bytes;
    }

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        var pieces = new List<(int, int)>();
        var next = new List<(int, int)>();
        foreach (var (raw, rawId) in _raw.Split(text))
        {
            if (rawId is { } r) { ids.Add(r); continue; }
            var normalized = _nfc ? Nfc.Normalize(raw) : raw;
            foreach (var (piece, id) in _normalized.Split(normalized))
            {
                if (id is { } n) { ids.Add(n); continue; }
                pieces.Clear();
                pieces.Add((0, piece.Length));
                foreach (var step in _steps)
                {
                    next.Clear();
                    foreach (var (s, l) in pieces) step.Split(piece, s, l, next);
                    (pieces, next) = (next, pieces);
                }
                foreach (var (s, l) in pieces) EncodeWord(piece.AsSpan(s, l), ids);
            }
        }
        return ids.ToArray();
    }

    void EncodeWord(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty) return;
        if (_wholeWords is not null)
        {
            var bytes = Encoding.UTF8.GetBytes(word.ToArray());
            if (_wholeWords.TryGetValue(ByteLevel.Encode(bytes), out var id)) { ids.Add(id); return; }
        }
        ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
    }

    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (id < 0 || id >= _bytes.Length || _bytes[id] is not { } b)
                throw new ChatForgeException($"token id {id} is not in the tokenizer's vocabulary (0..{_bytes.Length - 1})");
            bytes.AddRange(b);
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    public ReadOnlySpan<byte> TokenBytes(int id) =>
        id < 0 || id >= _bytes.Length || _bytes[id] is not { } b || (_addedById.TryGetValue(id, out var a) && a.Special) ? ReadOnlySpan<byte>.Empty : b;

    /// <summary>Copies tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja (those that
    /// existed when it was loaded) unchanged, so that transformers reads the directory back; then ChatForge's manifest.</summary>
    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        foreach (var (name, bytes) in _files) AtomicFile.WriteAllBytes(Path.Combine(dir, name), bytes);   // as read at load: the source may be gone
        TokenizerFiles.WriteManifest(dir, this);
    }

    /// <summary>Splits text around added tokens, leftmost first and longest at a tie (Hugging Face's matching).</summary>
    sealed class AddedTokenSplitter
    {
        readonly Dictionary<char, (string Content, int Id)[]> _byFirst;
        readonly char[] _firsts;

        public AddedTokenSplitter(IEnumerable<(string Content, int Id)> tokens)
        {
            _byFirst = tokens.Where(x => x.Content.Length > 0).GroupBy(x => x.Content[0])
                .ToDictionary(g => g.Key, g => g.OrderByDescending(x => x.Content.Length).ToArray());
            _firsts = _byFirst.Keys.ToArray();
        }

        public IEnumerable<(string Piece, int? Id)> Split(string text)
        {
            int start = 0, from = 0;
            while (_firsts.Length > 0 && from < text.Length)
            {
                int i = text.IndexOfAny(_firsts, from);
                if (i < 0) break;
                (string Content, int Id)? hit = null;
                foreach (var x in _byFirst[text[i]])
                    if (string.CompareOrdinal(text, i, x.Content, 0, x.Content.Length) == 0) { hit = x; break; }
                if (hit is not { } h) { from = i + 1; continue; }
                if (i > start) yield return (text[start..i], null);
                yield return (h.Content, h.Id);
                start = from = i + h.Content.Length;
            }
            if (start < text.Length) yield return (text[start..], null);
        }
    }

    /// <summary>Reads one JSON file's keys; every error is one line naming the file and the key path.</summary>
    sealed class Reader(string file)
    {
        public ChatForgeException Bad(string path, string what) => new($"{file}: '{path}' {what}");
        public ChatForgeException Unsupported(string path, string value, string supported) =>
            new($"{file}: '{path}' = '{value}' is not supported (supported: {supported})");

        public JsonObject Object(JsonObject o, string key) => Object(o, key, key);
        public JsonObject Object(JsonObject o, string path, string key) =>
            o[key] as JsonObject ?? throw Bad(path, o.ContainsKey(key) ? "must be an object" : "is missing");
        public JsonArray Array(JsonObject o, string path, string key) =>
            o[key] as JsonArray ?? throw Bad(path, o.ContainsKey(key) ? "must be an array" : "is missing");
        public string String(JsonObject o, string path, string key) =>
            o.ContainsKey(key) ? Str(o[key], path) : throw Bad(path, "is missing");
        public string Str(JsonNode? n, string path) =>
            n is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Bad(path, "must be a string");
        public string? OptString(JsonObject o, string path, string key) =>
            o[key] is null || o[key]!.GetValueKind() == JsonValueKind.Null ? null : Str(o[key], path);
        public bool? OptBool(JsonObject o, string path, string key) => o[key] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
            _ => throw Bad(path, "must be true or false"),
        };
        public double Number(JsonObject o, string path, string key) =>
            o[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : throw Bad(path, "must be a number");
        public int Int(JsonNode? n, string path) =>
            n is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i) ? i : throw Bad(path, "must be an integer id");

        /// <summary>A token given as a string or as {"content": ...} (transformers writes both); null when absent or null.</summary>
        public string? TokenString(JsonObject? config, string key) => config?[key] switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.Null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            JsonObject o => Str(o["content"], key + ".content"),
            _ => throw Bad(key, "must be a string or an object with 'content'"),
        };
    }
}
