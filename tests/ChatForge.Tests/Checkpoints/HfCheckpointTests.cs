using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Checkpoints;

public class HfCheckpointTests
{
    static readonly GptConfig Small = new() { VocabSize = 259, NPositions = 16, NEmbd = 16, NLayer = 2, NHead = 2 };

    static (Gpt, string) Saved(TempDir d)
    {
        manual_seed(11);
        var m = new Gpt(Small);
        HfCheckpoint.Write(d["m"], m, new ByteTokenizer());
        return (m, d["m"]);
    }

    [Fact]
    public void Round_trip_gives_identical_logits_and_tokenizer()
    {
        using var d = new TempDir();
        var (m, dir) = Saved(d);
        var (back, tok, extra) = HfCheckpoint.Load(dir);
        var x = tensor(new long[] { 1, 2, 3, 4, 5 }, new long[] { 1, 5 });
        m.eval();
        Assert.True(m.call(x).equal(back.call(x)).all().item<bool>());
        Assert.Equal("byte", tok.Kind);
        Assert.Empty(extra);
        Assert.Equal(Small, Assert.IsType<Gpt>(back).Config);
    }

    [Fact]
    public void Files_are_in_the_huggingface_layout()
    {
        using var d = new TempDir();
        var (m, dir) = Saved(d);
        foreach (var f in new[] { "config.json", "model.safetensors", "generation_config.json", "chatforge_tokenizer.json" })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        Assert.Equal("gpt2", (string?)config["model_type"]);
        Assert.Equal("GPT2LMHeadModel", (string?)config["architectures"]![0]);
        Assert.Equal(16, (int)config["n_embd"]!);
        var (tensors, meta, _) = SafeTensors.ReadHeader(Path.Combine(dir, "model.safetensors"));
        Assert.Equal("pt", meta["format"]);
        Assert.DoesNotContain(tensors, t => t.Name == "lm_head.weight");           // tied
        var cAttn = tensors.Single(t => t.Name == "transformer.h.0.attn.c_attn.weight");
        Assert.Equal(new long[] { 16, 48 }, cAttn.Shape);                          // Conv1D [in, out]
        // The stored Conv1D tensor is the transpose of the Linear weight.
        var stored = SafeTensors.Load(Path.Combine(dir, "model.safetensors"))["transformer.h.0.attn.c_attn.weight"];
        var linear = m.named_parameters().Single(p => p.name == "h.0.attn.c_attn.weight").parameter;
        Assert.True(stored.equal(linear.detach().t()).all().item<bool>());
    }

    [Fact]
    public void Loads_original_gpt2_names_without_the_transformer_prefix_and_ignores_mask_buffers()
    {
        using var d = new TempDir();
        var (m, dir) = Saved(d);
        var weights = Path.Combine(dir, "model.safetensors");
        var t = SafeTensors.Load(weights).ToDictionary(p => p.Key.Replace("transformer.", "", StringComparison.Ordinal), p => p.Value);
        t["h.0.attn.bias"] = ones(1, 1, 16, 16);
        t["lm_head.weight"] = t["wte.weight"];
        SafeTensors.Save(weights, t);
        var (back, _, _) = HfCheckpoint.Load(dir);
        var x = tensor(new long[] { 5, 6, 7 }, new long[] { 1, 3 });
        m.eval();
        Assert.True(m.call(x).equal(back.call(x)).all().item<bool>());
    }

    [Fact]
    public void Missing_wrong_shape_and_unexpected_tensors_are_errors()
    {
        using var d = new TempDir();
        var (_, dir) = Saved(d);
        var weights = Path.Combine(dir, "model.safetensors");
        var good = SafeTensors.Load(weights);

        var missing = new Dictionary<string, Tensor>(good); missing.Remove("transformer.h.1.mlp.c_fc.bias");
        SafeTensors.Save(weights, missing);
        Assert.Contains("missing tensor 'transformer.h.1.mlp.c_fc.bias'", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(dir)).Message);

        var wrong = new Dictionary<string, Tensor>(good) { ["transformer.wpe.weight"] = zeros(8, 16) };
        SafeTensors.Save(weights, wrong);
        Assert.Contains("'transformer.wpe.weight' has shape [8, 16], expected [16, 16]", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(dir)).Message);

        var extra = new Dictionary<string, Tensor>(good) { ["score.weight"] = zeros(1, 16) };
        SafeTensors.Save(weights, extra);
        Assert.Contains("unexpected tensor 'score.weight'", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(dir)).Message);
        var (_, _, heads) = HfCheckpoint.Load(dir, allowedExtra: new[] { "score.weight" });
        Assert.Equal(new long[] { 1, 16 }, heads["score.weight"].shape);
    }

    [Fact]
    public void Missing_directory_and_bad_config_are_errors()
    {
        using var d = new TempDir();
        Assert.Contains("not found", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(d["nope"])).Message);
        var (_, dir) = Saved(d);
        File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type":"llama","vocab_size":1}""");
        Assert.Contains("'num_attention_heads' is missing", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(dir)).Message);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ not json");
        Assert.Contains("not valid JSON", Assert.Throws<ChatForgeException>(() => HfCheckpoint.Load(dir)).Message);
    }
}
