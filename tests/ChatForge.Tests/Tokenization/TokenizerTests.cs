using System.Text;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace ChatForge.Tests.Tokenization;

public class TokenizerTests : IClassFixture<TokenizerTests.TrainedBpe>
{
    /// <summary>A BPE trained once for the whole class.</summary>
    public sealed class TrainedBpe : IDisposable
    {
        public TempDir Dir { get; } = new();
        public BpeFileTokenizer Tokenizer { get; }
        public TrainedBpe()
        {
            var text = File.ReadAllText(TestCorpus.WriteText(Dir["corpus.txt"], 300));
            Tokenizer = BpeTrainer.Train(new[] { text, "naïve café – 東京 😀 emoji" }, 400, Dir["bpe"]);
        }
        public void Dispose() => Dir.Dispose();
    }

    readonly TrainedBpe _bpe;
    public TokenizerTests(TrainedBpe bpe) => _bpe = bpe;

    /// <summary>Valid Unicode strings: arbitrary code points (no lone surrogates), including astral ones.</summary>
    static Arbitrary<string> UnicodeStrings() =>
        Gen.Choose(0, 0x10FFFF).Where(cp => cp is < 0xD800 or > 0xDFFF)
           .Select(char.ConvertFromUtf32)
           .ListOf()
           .Select(parts => string.Concat(parts))
           .ToArbitrary();

    static readonly Config Many = Config.QuickThrowOnFailure.WithMaxTest(300);

    [Fact]
    public void Byte_tokenizer_round_trips_arbitrary_unicode() =>
        Prop.ForAll(UnicodeStrings(), s => new ByteTokenizer().Decode(new ByteTokenizer().Encode(s)) == s).Check(Many);

    [Fact]
    public void Gpt2_tokenizer_round_trips_arbitrary_unicode()
    {
        var tok = new Gpt2Tokenizer();
        Prop.ForAll(UnicodeStrings(), s => tok.Decode(tok.Encode(s)) == s).Check(Many);
    }

    [Fact]
    public void Trained_bpe_round_trips_arbitrary_unicode() =>
        Prop.ForAll(UnicodeStrings(), s => _bpe.Tokenizer.Decode(_bpe.Tokenizer.Encode(s)) == s).Check(Many);

    [Fact]
    public void Byte_ids_are_the_utf8_bytes_and_specials_follow()
    {
        var tok = new ByteTokenizer();
        Assert.Equal(Encoding.UTF8.GetBytes("é!").Select(b => (int)b), tok.Encode("é!"));
        Assert.Equal(256, tok.EosId());
        Assert.Equal(new[] { 72, 256, 257, 105 }, tok.Encode("H<|endoftext|><|im_start|>i"));
        Assert.Equal(259, tok.VocabSize);
    }

    [Fact]
    public void Gpt2_gives_the_published_ids()
    {
        var tok = new Gpt2Tokenizer();
        // Known GPT-2 encodings ("Hello world" → 15496, 995).
        Assert.Equal(new[] { 15496, 995 }, tok.Encode("Hello world"));
        Assert.Equal(50256, tok.EosId());
        Assert.Equal(50257, tok.Id(SpecialTokens.ImStart));
        Assert.Equal(new[] { 15496, 50256 }, tok.Encode("Hello<|endoftext|>"));
    }

    [Fact]
    public void Gpt2_saved_as_vocab_and_merges_encodes_like_tiktoken()
    {
        using var dir = new TempDir();
        var tiktoken = new Gpt2Tokenizer();
        tiktoken.Save(dir.Path);
        var lines = File.ReadAllLines(dir["merges.txt"]);
        Assert.Equal("#version: 0.2", lines[0]);
        Assert.Equal(50000, lines.Length - 1); // GPT-2 has exactly 50,000 merges
        var files = new BpeFileTokenizer(dir["vocab.json"], dir["merges.txt"], tiktoken.Specials);
        var text = File.ReadAllText(TestCorpus.WriteText(dir["t.txt"], 20)) + " naïve café 東京 😀 1234 don't   spaces\n\ttabs";
        Assert.Equal(tiktoken.Encode(text), files.Encode(text));
    }

    [Fact]
    public void Trained_bpe_compresses_and_reloads_with_the_same_ids()
    {
        var tok = _bpe.Tokenizer;
        Assert.Equal(400, tok.VocabSize);
        var text = "The whale and the captain of the ship.";
        var ids = tok.Encode(text);
        Assert.True(ids.Length < Encoding.UTF8.GetByteCount(text) / 2, $"{ids.Length} tokens");
        var reloaded = TokenizerFiles.Load(_bpe.Dir["bpe"]);
        Assert.Equal("bpe", reloaded.Kind);
        Assert.Equal(ids, reloaded.Encode(text));
        Assert.Equal(tok.Specials, reloaded.Specials);
        // Special ids sit after the merges, in SpecialTokens order.
        Assert.Equal(new[] { 397, 398, 399 }, SpecialTokens.All.Select(tok.Id));
        Assert.Equal(new[] { 397 }, tok.Encode("<|endoftext|>"));
    }

    [Fact]
    public void Bpe_training_is_deterministic()
    {
        using var a = new TempDir();
        var text = File.ReadAllText(TestCorpus.WriteText(a["c.txt"], 100));
        BpeTrainer.Train(new[] { text }, 300, a["x"]);
        BpeTrainer.Train(new[] { text }, 300, a["y"]);
        Assert.Equal(File.ReadAllText(a["x/merges.txt"]), File.ReadAllText(a["y/merges.txt"]));
        Assert.Equal(File.ReadAllText(a["x/vocab.json"]), File.ReadAllText(a["y/vocab.json"]));
    }

    [Fact]
    public void Bpe_first_merge_is_the_most_frequent_pair()
    {
        using var d = new TempDir();
        // "ab" occurs 3 times, everything else once.
        var tok = BpeTrainer.Train(new[] { "ab ab ab cd" }, 256 + 3 + 1, d.Path);
        var merges = File.ReadAllLines(d["merges.txt"]);
        Assert.Equal("a b", merges[1]);
        Assert.Equal(new[] { 256 }, tok.Encode("ab"));
    }

    [Fact]
    public void Token_bytes_concatenate_to_the_text()
    {
        foreach (ITokenizer tok in new ITokenizer[] { new ByteTokenizer(), new Gpt2Tokenizer(), _bpe.Tokenizer })
        {
            var text = "naïve 😀 whale";
            var bytes = tok.Encode(text).SelectMany(id => tok.TokenBytes(id).ToArray()).ToArray();
            Assert.Equal(Encoding.UTF8.GetBytes(text), bytes);
        }
    }

    [Fact]
    public void Every_kind_saves_and_loads()
    {
        using var d = new TempDir();
        foreach (ITokenizer tok in new ITokenizer[] { new ByteTokenizer(), new Gpt2Tokenizer(), _bpe.Tokenizer })
        {
            var dir = d[tok.Kind];
            tok.Save(dir);
            var back = TokenizerFiles.Load(dir);
            Assert.Equal(tok.Kind, back.Kind);
            Assert.Equal(tok.VocabSize, back.VocabSize);
            Assert.Equal(tok.Encode("Call me Ishmael."), back.Encode("Call me Ishmael."));
        }
        Assert.Contains("chat_template", File.ReadAllText(d["gpt2/tokenizer_config.json"]));
    }

    [Fact]
    public void Out_of_vocabulary_ids_are_a_clear_error()
    {
        var e = Assert.Throws<ChatForgeException>(() => new ByteTokenizer().Decode(new[] { 1000 }));
        Assert.Contains("1000", e.Message);
    }
}
