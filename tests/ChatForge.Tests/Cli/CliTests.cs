using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Tests.Support;
using Xunit;

namespace ChatForge.Tests.Cli;

public class CliTests
{
    static void AssertOneLineError((int Code, string Out, string Err) r, string expected)
    {
        Assert.NotEqual(0, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", r.Err); // no stack trace without --verbose
    }

    [Fact]
    public void Unknown_verbs_and_options_are_one_line_errors()
    {
        AssertOneLineError(CliRunner.Run("frobnicate"), "unknown verb 'frobnicate'");
        AssertOneLineError(CliRunner.Run("generate", "--model", "x", "--bogus", "1"), "unknown option --bogus");
        AssertOneLineError(CliRunner.Run("generate", "--model", "x", "--prompt", "hi", "--top-p", "abc"), "--top-p must be a number");
    }

    [Fact]
    public void Bad_training_input_is_a_one_line_error_naming_file_line_or_key()
    {
        using var d = new TempDir();
        var bad = d.Write("bad.jsonl", "{\"text\":\"fine\"}\nnot json\n");
        AssertOneLineError(CliRunner.Run("pretrain", "--preset", "tiny", "--data", bad, "--out", d["r1"]), "bad.jsonl:2: malformed JSON");
        var empty = d.Write("empty.txt", "");
        AssertOneLineError(CliRunner.Run("pretrain", "--preset", "tiny", "--data", empty, "--out", d["r2"]), "empty corpus");
        var cfg = d.Write("cfg.json", """{"model": {"n_layers": 2}}""");
        AssertOneLineError(CliRunner.Run("pretrain", "--preset", "tiny", "--config", cfg, "--out", d["r3"]), "n_layers");
        var range = d.Write("range.json", """{"model": {"n_embd": 33}}""");
        AssertOneLineError(CliRunner.Run("pretrain", "--preset", "tiny", "--config", range, "--out", d["r4"]), "'model.n_embd' = 33");
        var invalid = d["latin1.txt"];
        File.WriteAllBytes(invalid, new byte[] { 0x63, 0x61, 0x66, 0xe9, 0x0a });
        AssertOneLineError(CliRunner.Run("pretrain", "--preset", "tiny", "--data", invalid, "--out", d["r5"]), "latin1.txt: invalid UTF-8");
    }

    [Fact]
    public void Missing_and_corrupt_checkpoints_are_one_line_errors()
    {
        using var d = new TempDir();
        AssertOneLineError(CliRunner.Run("generate", "--model", d["none"], "--prompt", "x"), "model directory not found");
        var copy = d["m"];
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(TinyRun.ModelDir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var weights = Path.Combine(copy, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]); // truncated
        AssertOneLineError(CliRunner.Run("generate", "--model", copy, "--prompt", "x"), "model.safetensors");
        File.Delete(weights);
        AssertOneLineError(CliRunner.Run("score", "--model", copy, "--text", "hello"), "model.safetensors: file not found");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Generate_prints_only_the_completion(string family)
    {
        var r = CliRunner.Run("generate", "--model", TinyRun.ModelDirFor(family), "--prompt", "The whale", "--temperature", "0", "--max-new-tokens", "15");
        Assert.Equal(0, r.Code);
        var (m, tok, _) = HfCheckpoint.Load(TinyRun.ModelDirFor(family));
        var expected = new TextGenerator(m, tok).Complete("The whale", new SamplingOptions { Temperature = 0, MaxNewTokens = 15 }).Text;
        Assert.Equal(expected + Environment.NewLine, r.Out);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Score_prints_the_mean_nll_per_token(string family)
    {
        var r = CliRunner.Run("score", "--model", TinyRun.ModelDirFor(family), "--text", "The whale and the sea.");
        Assert.Equal(0, r.Code);
        var printed = double.Parse(r.Out.Trim(), CultureInfo.InvariantCulture);
        var (m, tok, _) = HfCheckpoint.Load(TinyRun.ModelDirFor(family));
        Assert.Equal(Perplexity.Score(m, tok, "The whale and the sea.").NatsPerToken, printed, 5);
        // A text like the training corpus scores better than noise.
        var noise = double.Parse(CliRunner.Run("score", "--model", TinyRun.ModelDirFor(family), "--text", "zq#8 xj!k 9vv~ qqz").Out.Trim(), CultureInfo.InvariantCulture);
        Assert.True(printed < noise, $"{printed} vs {noise}");
    }

    [Fact]
    public void Tokenizer_train_writes_a_loadable_tokenizer()
    {
        using var d = new TempDir();
        var corpus = TestCorpus.WriteText(d["c.txt"], 200);
        var r = CliRunner.Run("tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--data", corpus, "--out", d["tok"]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(300, ChatForge.Tokenization.TokenizerFiles.Load(d["tok"]).VocabSize);
    }

    [Fact]
    public void Bench_writes_every_documented_figure()
    {
        using var d = new TempDir();
        var cfg = d.Write("small.json", """{"model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 32}, "tokenizer": {"kind": "byte"}, "optim": {"batch_size": 2}}""");
        var r = CliRunner.Run("bench", "--config", cfg, "--train-steps", "2", "--llama", "tiny", "--out", d["b.json"]);
        Assert.True(r.Code == 0, r.Err);
        var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["b.json"])).RootElement;
        foreach (var k in new[] { "sgemm_gflops", "train_tokens_per_second", "mfu", "generate_tokens_per_second_cached", "generate_tokens_per_second_uncached", "peak_rss_mb",
                                  "llama_parameters", "llama_lora_trainable_parameters", "llama_lora_train_tokens_per_second", "llama_generate_tokens_per_second_cached", "llama_peak_rss_mb" })
            Assert.True(json.GetProperty(k).GetDouble() > 0, k);
        Assert.Equal(1, json.GetProperty("generate_same_tokens").GetDouble());
    }
}
