using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;

namespace ChatForge.Tests.Tokenization;

/// <summary>
/// tokenizer.json directories in the shapes of real checkpoints, built from one byte-level BPE trained here (its
/// vocabulary and merges written into each shape): GPT-2 (ByteLevel with its regex), Qwen2.5 (NFC, Split with Qwen2's regex, merges
/// as strings), Llama 3.2 (Split with \p{N}{1,3}, ignore_merges, merges as pairs, a BOS post-processor) and SmolLM2
/// (Digits then ByteLevel, the special tokens at ids 0..2). Each comes with the tokenizer_config.json of its family.
/// </summary>
public sealed class HfTokenizerFixture : IDisposable
{
    public const string Qwen2Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Llama3Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // The chat templates' Jinja as the checkpoints' tokenizer_config.json holds it (the parts these layouts use).
    public const string QwenTemplate =
        @"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}" +
        @"{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}" +
        @"{%- for message in messages %}{%- if (message.role == ""user"") or (message.role == ""system"" and not loop.first) or (message.role == ""assistant"" and not message.tool_calls) %}" +
        @"{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}" +
        @"{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";
    public const string SmolTemplate =
        @"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}" +
        @"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    public const string Llama32Template =
        "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n" +
        "    {%- else %}\n        {%- set date_string = \"26 Jul 2024\" %}\n    {%- endif %}\n{%- endif %}\n" +
        "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n" +
        "{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n" +
        @"{{- ""<|start_header_id|>system<|end_header_id|>\n\n"" }}" + "\n" +
        @"{{- ""Cutting Knowledge Date: December 2023\n"" }}" + "\n" + @"{{- ""Today Date: "" + date_string + ""\n\n"" }}" + "\n" +
        "{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n" +
        @"        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}" + "\n" +
        "{%- endfor %}\n{%- if add_generation_prompt %}\n" + @"    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}" + "\n{%- endif %}\n";
    public const string Llama30Template =
        @"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}" +
        @"{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    public TempDir Dir { get; } = new();
    public string Gpt2 => Dir["gpt2"];
    public string Qwen => Dir["qwen"];
    public string Llama => Dir["llama"];
    public string Smol => Dir["smol"];
    public IEnumerable<string> All => new[] { Gpt2, Qwen, Llama, Smol };

    public HfTokenizerFixture()
    {
        var text = File.ReadAllText(TestCorpus.WriteText(Dir["corpus.txt"], 200))
            + " naïve café résumé déjà vu — 東京 北京 😀😀 emoji 123 4567 don't I'm we'll DON'T it's\r\n\r\n"
            + string.Concat(Enumerable.Repeat("Call me Ishmael. Some years ago 1851, never mind how long precisely. ", 20));
        var (vocab, merges) = TrainBpe(text, BoundaryTexts, 600);
        int n = vocab.Count;

        // GPT-2: ByteLevel with its regex; <|endoftext|> both in the vocab and an added token.
        var gpt2Vocab = new Dictionary<string, int>(vocab) { ["<|endoftext|>"] = n };
        Write(Gpt2, gpt2Vocab, merges, pairs: false, ignoreMerges: false, normalizer: null,
            preTokenizer: ByteLevelStep(useRegex: true),
            added: new[] { (n, "<|endoftext|>", true), (n + 1, "<|im_start|>", true), (n + 2, "<|im_end|>", true) },
            postProcessor: ByteLevelStep(useRegex: true),
            config: Config("<|endoftext|>", "<|endoftext|>", TokenizerFiles.ChatTemplateJinja));

        // Qwen2.5: NFC, Split(Qwen2 regex) + ByteLevel(no regex); a non-special added token; eos <|im_end|>.
        Write(Qwen, vocab, merges, pairs: false, ignoreMerges: false, normalizer: new JsonObject { ["type"] = "NFC" },
            preTokenizer: Sequence(SplitStep(Qwen2Regex), ByteLevelStep(useRegex: false)),
            added: new[] { (n, "<|endoftext|>", true), (n + 1, "<|im_start|>", true), (n + 2, "<|im_end|>", true), (n + 3, "<tool_call>", false) },
            postProcessor: ByteLevelStep(useRegex: false),
            config: Config(null, "<|im_end|>", QwenTemplate, pad: "<|endoftext|>"));

        // Llama 3.2: Split(\p{N}{1,3}) + ByteLevel; ignore_merges, with one whole word BPE would not build; merges as pairs.
        var llamaVocab = new Dictionary<string, int>(vocab) { ["ĠQueequeg"] = n };
        var llamaSpecials = new[] { "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>" };
        Write(Llama, llamaVocab, merges, pairs: true, ignoreMerges: true, normalizer: null,
            preTokenizer: Sequence(SplitStep(Llama3Regex), ByteLevelStep(useRegex: false)),
            added: llamaSpecials.Select((s, i) => (n + 1 + i, s, true)).ToArray(),
            postProcessor: new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(ByteLevelStep(useRegex: true), new JsonObject
                {
                    ["type"] = "TemplateProcessing",
                    ["single"] = new JsonArray(
                        new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                        new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                    ["pair"] = new JsonArray(),
                    ["special_tokens"] = new JsonObject(),
                }),
            },
            config: Config("<|begin_of_text|>", "<|eot_id|>", Llama32Template));

        // SmolLM2: Digits(individual) + ByteLevel(GPT-2 regex); the specials first (ids 0..2), the vocabulary after them.
        var smolVocab = vocab.ToDictionary(p => p.Key, p => p.Value + 3);
        Write(Smol, smolVocab, merges, pairs: false, ignoreMerges: false, normalizer: null,
            preTokenizer: Sequence(new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }, ByteLevelStep(useRegex: true)),
            added: new[] { (0, "<|endoftext|>", true), (1, "<|im_start|>", true), (2, "<|im_end|>", true) },
            postProcessor: ByteLevelStep(useRegex: true),
            config: Config("<|im_start|>", "<|im_end|>", SmolTemplate, pad: "<|im_end|>"));
    }

    /// <summary>
    /// Texts learned whole, not split by GPT-2's pattern, so the vocabulary has tokens that cross the places where the
    /// families' pre-tokenizers differ (an emoji before letters, punctuation before a word, runs of digits, a space before
    /// a newline, an upper-case contraction): a pre-tokenizer that splits wrongly then gives other ids.
    /// </summary>
    static readonly string[] BoundaryTexts =
    {
        "😀abc", "x😀123", "(the", "[whale]", ".com", "'S", "'LL", "DON'T", "I'M", "  x", "\n\n", "\n\n\n", " \n", "\r\n\r\n", "123",
        "1234", "12345", " 12", " 1234", "Ishmael.", "Ishmael!\n", "é", "e\u0301", "東京", "😀😀", "𝐀𝐁𝐂", "   \n\n   x", "it's", "!!!\n\n\n",
        "1,000,000", "3.14159", " x", "\t\t", "a𝐀b", "—東", " 'S", "'s", "ſ", "İs",
    };

    /// <summary>
    /// A plain byte-level BPE: the words of <paramref name="text"/> (GPT-2's pattern) plus each boundary text whole,
    /// the most frequent adjacent pair merged <paramref name="merges"/> times (ties: the ordinally first pair).
    /// </summary>
    static (Dictionary<string, int> Vocab, List<string[]> Merges) TrainBpe(string text, string[] whole, int merges)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (System.Text.RegularExpressions.Match m in new System.Text.RegularExpressions.Regex(ByteLevel.Gpt2Pattern).Matches(text))
            counts[m.Value] = counts.GetValueOrDefault(m.Value) + 1;
        foreach (var w in whole) counts[w] = counts.GetValueOrDefault(w) + 30;
        var words = counts.Select(p => (Symbols: System.Text.Encoding.UTF8.GetBytes(p.Key).Select(b => ByteLevel.ByteToChar[b].ToString()).ToList(), Count: p.Value)).ToList();
        var vocab = Enumerable.Range(0, 256).ToDictionary(b => ByteLevel.ByteToChar[b].ToString(), b => b);
        var learned = new List<string[]>();
        while (learned.Count < merges)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (sym, c) in words)
                for (int i = 0; i + 1 < sym.Count; i++) pairs[(sym[i], sym[i + 1])] = pairs.GetValueOrDefault((sym[i], sym[i + 1])) + c;
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => p.Key.Item1 + " " + p.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2) break;
            var (a, b) = best.Key;
            learned.Add(new[] { a, b });
            vocab.TryAdd(a + b, vocab.Count);
            foreach (var (sym, _) in words)
                for (int i = 0; i + 1 < sym.Count; i++)
                    if (sym[i] == a && sym[i + 1] == b) { sym[i] = a + b; sym.RemoveAt(i + 1); }
        }
        return (vocab, learned);
    }

    public static JsonObject ByteLevelStep(bool useRegex) =>
        new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = useRegex };

    static JsonObject SplitStep(string regex) => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false,
    };

    static JsonObject Sequence(params JsonNode[] steps) => new() { ["type"] = "Sequence", ["pretokenizers"] = new JsonArray(steps) };

    static JsonObject Config(string? bos, string eos, string template, string? pad = null) => new()
    {
        ["bos_token"] = bos, ["eos_token"] = eos, ["pad_token"] = pad, ["chat_template"] = template,
        ["model_max_length"] = 131072, ["tokenizer_class"] = "PreTrainedTokenizerFast",
    };

    static void Write(string dir, Dictionary<string, int> vocab, List<string[]> merges, bool pairs, bool ignoreMerges, JsonNode? normalizer,
        JsonNode preTokenizer, (int Id, string Content, bool Special)[] added, JsonNode? postProcessor, JsonObject config)
    {
        Directory.CreateDirectory(dir);
        var v = new JsonObject();
        foreach (var (k, id) in vocab.OrderBy(p => p.Value)) v[k] = id;
        var m = new JsonArray(merges.Select(x => pairs ? (JsonNode)new JsonArray(x[0], x[1]) : x[0] + " " + x[1]).ToArray());
        var root = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null,
            ["added_tokens"] = new JsonArray(added.Select(a => (JsonNode)new JsonObject
            {
                ["id"] = a.Id, ["content"] = a.Content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = a.Special,
            }).ToArray()),
            ["normalizer"] = normalizer, ["pre_tokenizer"] = preTokenizer, ["post_processor"] = postProcessor,
            ["decoder"] = ByteLevelStep(useRegex: true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = ignoreMerges, ["vocab"] = v, ["merges"] = m,
            },
        };
        var o = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString(o));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(o));
    }

    public void Dispose() => Dir.Dispose();
}
