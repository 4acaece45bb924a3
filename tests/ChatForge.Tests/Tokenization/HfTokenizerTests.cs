using System.Text;
using System.Text.Json.Nodes;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace ChatForge.Tests.Tokenization;

/// <summary>Hugging Face tokenizer.json: ids and text equal an independent stdlib-Python reading of the tokenizers library.</summary>
public class HfTokenizerTests : IClassFixture<HfTokenizerFixture>
{
    readonly HfTokenizerFixture _f;
    public HfTokenizerTests(HfTokenizerFixture f) => _f = f;

    public static readonly string[] Texts =
    {
        "Hello world", "Call me Ishmael.", " Queequeg", "Queequeg", "Call me Queequeg", "the whale and the sea",
        "DON'T you think? I'M sure THEY'LL say it's fine, we've seen it'S", "don't 'tis 're",
        "naïve café résumé déjà vu — 東京 北京 and 한국어 and Россия", "e\u0301 composed by NFC: A\u030A, n\u0303",
        "emoji 😀👍🏽🇺🇸 and ❤️ and 😀abc and x😀123 and 😀 ok",
        "Numbers 1 12 123 1234 12345 3.14159 and 1,000,000 and ١٢٣ and Ⅻ ²",
        "line1\r\nline2\n\n\nline3\r\n", "multiple   spaces\t\ttabs  \n  indented", "  leading and trailing  ", " ", "\n", "",
        "a<|endoftext|>b<|im_start|>user\nhi<|im_end|>\n", "<|im_end|><|im_end|>", "<tool_call>{\"name\": 1}</tool_call>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "𝐀𝐁𝐂 math letters 𝟏𝟐𝟑 digits and 𠀀𠀁 ideographs",
        "\u00a0no-break\u2003em space\u3000ideographic", "def foo(x):\n    return x ** 2  # comment\n", "!!!??? ... --- (parens)",
        "Punctuation!!!\n\n\nafter", "   \n\n   x", "a\u0085b\u2028c",
    };

    static List<int[]> Reference(string dir, IEnumerable<string> texts) =>
        PythonReference.Json<List<int[]>>("tokenizer_reference.py", new[] { "encode", dir }, texts.ToList());

    [Fact]
    public void Every_shape_encodes_like_the_python_reference()
    {
        foreach (var dir in _f.All)
        {
            var tok = HfTokenizer.Load(dir);
            var expected = Reference(dir, Texts);
            for (int i = 0; i < Texts.Length; i++)
                Assert.True(expected[i].SequenceEqual(tok.Encode(Texts[i])),
                    $"{Path.GetFileName(dir)}: '{Texts[i]}': expected [{string.Join(",", expected[i])}], got [{string.Join(",", tok.Encode(Texts[i]))}]");
        }
    }

    [Fact]
    public void Every_shape_decodes_like_the_python_reference()
    {
        foreach (var dir in _f.All)
        {
            var tok = HfTokenizer.Load(dir);
            var ids = Texts.Select(tok.Encode).ToList();
            // Also ids that split a character's bytes: the decoder's replacement characters must agree.
            ids.Add(tok.Encode("😀").Take(1).ToArray());
            var expected = PythonReference.Json<List<string>>("tokenizer_reference.py", new[] { "decode", dir }, ids);
            for (int i = 0; i < ids.Count; i++) Assert.Equal(expected[i], tok.Decode(ids[i]));
        }
    }

    [Fact]
    public void Random_text_encodes_like_the_python_reference()
    {
        // Words, digits, spaces, newlines, apostrophes, accents, CJK, emoji and specials in random order.
        string[] atoms = { "the", " whale", "Ishmael", " Queequeg", " ", "  ", "\n", "\r\n", "\t", "'s", "'T", "'ll", "0", "12", "3456", ".", "!?", "é", "e\u0301",
            "東", "😀", "𝐀", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "DON'T", "ſ", "İ", "\u00a0", "x" };
        var rng = new Random(7);
        var texts = Enumerable.Range(0, 60).Select(_ => string.Concat(Enumerable.Range(0, rng.Next(1, 25)).Select(_ => atoms[rng.Next(atoms.Length)]))).ToList();
        foreach (var dir in _f.All)
        {
            var tok = HfTokenizer.Load(dir);
            var expected = Reference(dir, texts);
            for (int i = 0; i < texts.Count; i++) Assert.True(expected[i].SequenceEqual(tok.Encode(texts[i])), $"{Path.GetFileName(dir)}: '{texts[i]}'");
        }
    }

    static Arbitrary<string> UnicodeStrings() =>
        Gen.Choose(0, 0x10FFFF).Where(cp => cp is < 0xD800 or > 0xDFFF)
           .Select(char.ConvertFromUtf32).ListOf().Select(parts => string.Concat(parts)).ToArbitrary();

    [Fact]
    public void Decode_inverts_encode_on_valid_unicode()
    {
        foreach (var dir in _f.All)
        {
            var tok = HfTokenizer.Load(dir);
            bool nfc = dir == _f.Qwen;
            Prop.ForAll(UnicodeStrings(), s =>
            {
                var expected = nfc ? Nfc.Normalize(s) : s;
                return tok.Decode(tok.Encode(s)) == expected;
            }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
        }
    }

    [Fact]
    public void Nfc_equals_python_unicodedata()
    {
        // Every code point up to U+2FFFF (the decomposing ones among them), then random mixes of letters, combining marks (in any order) and Hangul jamo.
        var texts = new List<string>();
        for (int cp = 0xC0; cp < 0x30000; cp++)
            if (cp is < 0xD800 or > 0xDFFF) texts.Add(char.ConvertFromUtf32(cp));
        var rng = new Random(3);
        int[] pool = { 'a', 'e', 'o', 'A', 0x300, 0x301, 0x308, 0x323, 0x327, 0x338, 0x345, 0x1100, 0x1161, 0x11A8, 0xAC00, 0x3099, 0x304B, 0x0915, 0x093C, 0x05D1, 0x05BC, 0x0F71, 0x0F72, 0x1E0A, 0x212B, 0x2126 };
        for (int i = 0; i < 3000; i++)
            texts.Add(string.Concat(Enumerable.Range(0, rng.Next(1, 8)).Select(_ => char.ConvertFromUtf32(pool[rng.Next(pool.Length)]))));
        var chunks = texts.Chunk(60000).ToList();
        foreach (var chunk in chunks)
        {
            var expected = PythonReference.Json<List<string>>("tokenizer_reference.py", new[] { "nfc" }, chunk);
            for (int i = 0; i < chunk.Length; i++)
                Assert.True(expected[i] == Nfc.Normalize(chunk[i]), $"NFC of {string.Join(" ", chunk[i].EnumerateRunes().Select(r => r.Value.ToString("X4")))}");
        }
    }

    [Fact]
    public void Token_bytes_concatenate_to_the_text_and_special_tokens_have_none()
    {
        foreach (var dir in _f.All)
        {
            var tok = HfTokenizer.Load(dir);
            var text = "naïve 😀 whale 1234 <tool_call>";
            Assert.Equal(Encoding.UTF8.GetBytes(text), tok.Encode(text).SelectMany(id => tok.TokenBytes(id).ToArray()).ToArray());
            foreach (var id in tok.Specials.Values) Assert.Equal(0, tok.TokenBytes(id).Length);
        }
    }

    [Fact]
    public void Ignore_merges_takes_a_whole_word_from_the_vocabulary()
    {
        var llama = HfTokenizer.Load(_f.Llama);
        int whole = JsonNode.Parse(File.ReadAllText(Path.Combine(_f.Llama, "tokenizer.json")))!["model"]!["vocab"]!["ĠQueequeg"]!.GetValue<int>();
        Assert.Equal(new[] { whole }, llama.Encode(" Queequeg"));
        Assert.True(HfTokenizer.Load(_f.Gpt2).Encode(" Queequeg").Length > 1); // the same merges without ignore_merges
        Assert.DoesNotContain(whole, llama.Encode("Queequeg")); // a whole piece only: no leading space, no whole word
    }

    [Fact]
    public void Pre_tokenizers_split_digits_as_their_families_do()
    {
        string Pieces(string dir, string text) => string.Join("|", HfTokenizer.Load(dir).Encode(text).Select(id => HfTokenizer.Load(dir).Decode(new[] { id })));
        // SmolLM2: every digit alone; Qwen2: every digit alone too; Llama 3: groups of up to three; GPT-2: " 12345" may merge.
        Assert.DoesNotContain("12", Pieces(_f.Smol, "12345"));
        Assert.DoesNotContain("12", Pieces(_f.Qwen, "12345"));
        Assert.All(Pieces(_f.Llama, "1234567").Split('|'), p => Assert.True(p.Length <= 3));
    }

    [Fact]
    public void Special_tokens_eos_and_end_of_turn_follow_the_checkpoint_configs()
    {
        var qwen = (ITokenizer)HfTokenizer.Load(_f.Qwen);
        Assert.Equal("hf", qwen.Kind);
        Assert.Equal("<|im_end|>", qwen.EosToken);
        Assert.Equal(qwen.Id("<|im_end|>"), qwen.EosId());
        Assert.Equal(qwen.Id("<|im_end|>"), qwen.EndOfTurnId());
        Assert.DoesNotContain("<tool_call>", qwen.Specials.Keys); // an added token, not a special one
        Assert.Equal("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", qwen.ChatFormat.DefaultSystem);

        var llama = (ITokenizer)HfTokenizer.Load(_f.Llama);
        Assert.Equal(llama.Id("<|eot_id|>"), llama.EosId());
        Assert.Equal(llama.Id("<|eot_id|>"), llama.EndOfTurnId());
        Assert.Equal(ChatFormatKind.Llama3, llama.ChatFormat.Kind);
        Assert.Equal("<|begin_of_text|>", llama.ChatFormat.Bos);
        Assert.Equal("26 Jul 2024", llama.ChatFormat.DateString);
        Assert.Equal("<|begin_of_text|>", ((HfTokenizer)llama).PostProcessorBos);
        Assert.DoesNotContain(llama.Id("<|begin_of_text|>"), llama.Encode("hello")); // Encode adds no post-processor tokens

        var smol = (ITokenizer)HfTokenizer.Load(_f.Smol);
        Assert.Equal(0, smol.Id("<|endoftext|>"));
        Assert.Equal(2, smol.EosId());
        Assert.Equal("You are a helpful AI assistant named SmolLM, trained by Hugging Face", smol.ChatFormat.DefaultSystem);

        var gpt2 = (ITokenizer)HfTokenizer.Load(_f.Gpt2);
        Assert.Equal(ChatFormat.ChatMl, gpt2.ChatFormat); // ChatForge's own template: ChatML, no default system message
        Assert.Equal(gpt2.Id("<|endoftext|>"), gpt2.EosId());
    }

    [Fact]
    public void Tokenizer_files_load_picks_tokenizer_json_and_save_keeps_the_files()
    {
        using var d = new TempDir();
        foreach (var dir in _f.All)
        {
            var tok = TokenizerFiles.Load(dir);
            Assert.IsType<HfTokenizer>(tok);
            var copy = d[Path.GetFileName(dir)];
            tok.Save(copy);
            foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
                Assert.Equal(File.ReadAllBytes(Path.Combine(dir, name)), File.ReadAllBytes(Path.Combine(copy, name)));
            Assert.True(TokenizerFiles.Exists(copy));
            var back = TokenizerFiles.Load(copy);
            Assert.Equal("hf", back.Kind);
            Assert.Equal(tok.VocabSize, back.VocabSize);
            Assert.Equal(tok.ChatFormat, back.ChatFormat);
            Assert.Equal(tok.Encode(Texts[7]), back.Encode(Texts[7]));
            back.Save(copy); // saving onto its own directory leaves it loadable
            Assert.Equal(tok.Encode(Texts[9]), TokenizerFiles.Load(copy).Encode(Texts[9]));
        }
    }

    [Fact]
    public void Chat_template_can_come_from_chat_template_jinja()
    {
        using var d = new TempDir();
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" }) File.Copy(Path.Combine(_f.Llama, name), d[name]);
        var config = JsonNode.Parse(File.ReadAllText(d["tokenizer_config.json"]))!.AsObject();
        config.Remove("chat_template");
        File.WriteAllText(d["tokenizer_config.json"], config.ToJsonString());
        Assert.Equal(ChatFormatKind.None, ((ITokenizer)HfTokenizer.Load(d.Path)).ChatFormat.Kind);
        var e = Assert.Throws<ChatForgeException>(() => ChatTemplate.Encode(HfTokenizer.Load(d.Path), new[] { new ChatMessage("user", "hi") }, true));
        Assert.Contains("chat_template", e.Message);
        File.WriteAllText(d["chat_template.jinja"], HfTokenizerFixture.Llama30Template);
        var f = ((ITokenizer)HfTokenizer.Load(d.Path)).ChatFormat;
        Assert.Equal((ChatFormatKind.Llama3, (string?)null), (f.Kind, f.DateString));
    }
}
