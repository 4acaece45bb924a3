using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Modeling;

/// <summary>
/// The Llama-family decoder against tests/hf_reference/llama_reference.py, an independent plain-Python reading of
/// Hugging Face's modeling_llama semantics, on tiny random configs (GQA, tied and untied, Qwen2's biases, llama3 rope
/// scaling); and its KV cache against recomputation.
/// </summary>
public class LlamaTests
{
    static LlamaConfig Tiny(int kvHeads = 2, bool tied = false, bool bias = false, bool scaled = false, string modelType = "llama") => new()
    {
        ModelType = modelType,
        VocabSize = 40, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = kvHeads,
        MaxPositionEmbeddings = 32, RmsNormEps = 1e-5, RopeTheta = 500, TieWordEmbeddings = tied, AttentionBias = bias,
        RopeScaling = scaled ? new Llama3RopeScaling(8, 1, 4, 8) : null,
    };

    static Llama Random(LlamaConfig c, long seed)
    {
        manual_seed(seed);
        var m = new Llama(c);
        using (no_grad()) foreach (var p in m.parameters()) p.add_(randn_like(p) * 0.1);   // norms and biases away from 1 and 0
        m.eval();
        return m;
    }

    [Theory]
    [InlineData(2, false, false, false, "llama")]   // grouped-query attention: 4 query heads share 2 key/value heads
    [InlineData(4, true, false, false, "llama")]    // multi-head, tied embeddings
    [InlineData(1, false, true, false, "qwen2")]    // multi-query, q/k/v biases
    [InlineData(2, false, true, false, "llama")]    // a llama with attention_bias: o_proj has one too
    [InlineData(2, true, false, true, "llama")]     // Llama 3's rope scaling
    public void The_logits_equal_an_independent_reading_of_huggingface_s_llama(int kvHeads, bool tied, bool bias, bool scaled, string modelType)
    {
        using var d = new TempDir();
        using var m = Random(Tiny(kvHeads, tied, bias, scaled, modelType), seed: 3 + kvHeads);
        HfCheckpoint.Write(d.Path, m, tokenizer: null);
        var names = m.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.layers.1.self_attn.k_proj.weight", names);
        Assert.Equal(!tied, names.Contains("lm_head.weight"));
        Assert.Equal(bias, names.Contains("model.layers.0.self_attn.q_proj.bias"));
        Assert.Equal(bias && modelType == "llama", names.Contains("model.layers.0.self_attn.o_proj.bias"));
        var ids = new[] { 5, 17, 3, 39, 0, 22, 8 };
        var reference = PythonReference.LastLogits("llama_reference.py", d.Path, ids);
        using var _ = no_grad();
        var ours = m.call(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0))[0, -1].data<float>().ToArray();
        Assert.Equal(40, reference.Length);
        for (int i = 0; i < ours.Length; i++) Assert.True(Math.Abs(reference[i] - ours[i]) < 1e-4, $"logit {i}: reference {reference[i]}, ours {ours[i]}");
    }

    [Fact]
    public void The_kv_cache_gives_the_logits_of_recomputation_with_fewer_key_value_heads()
    {
        using var m = Random(Tiny(kvHeads: 2), seed: 9);
        var ids = tensor(new long[] { 5, 17, 3, 39, 0, 22, 8, 11, 30, 2, 14, 1, 6, 7, 9, 4, 21, 33 }).reshape(2, 9);   // two rows
        using var _ = no_grad();
        var full = m.call(ids);                                   // (2, 9, V)
        using var cache = m.NewCache(2, 9, ids.device);
        Assert.Equal(2, (int)cache.Keys(0).shape[1]);             // the cache holds the key/value heads only
        var prefill = m.Logits(m.Hidden(ids.narrow(1, 0, 4), cache: cache));
        Assert.True(allclose(full.narrow(1, 0, 4), prefill, rtol: 1e-4, atol: 1e-5));
        for (int t = 4; t < 9; t++)
        {
            var step = m.Logits(m.Hidden(ids.narrow(1, t, 1), cache: cache));
            Assert.True(allclose(full.narrow(1, t, 1), step, rtol: 1e-4, atol: 1e-5), $"position {t}");
        }
        Assert.Equal(9, cache.Length);
    }

    static Llama Load(string dir) => Assert.IsType<Llama>(HfCheckpoint.LoadModel(dir).Model);

    static double[] LastLogits(Llama m, int[] ids)
    {
        using var _ = no_grad();
        return m.call(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0))[0, -1].data<float>().Select(x => (double)x).ToArray();
    }

    static void AssertClose(double[] want, double[] got)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) < 1e-6, $"logit {i}: {want[i]} against {got[i]}");
    }

    [Fact]
    public void A_saved_checkpoint_loads_back_whole_sharded_or_in_bf16()
    {
        using var d = new TempDir();
        using var m = Random(Tiny(kvHeads: 2, bias: true, modelType: "qwen2"), seed: 12);
        var ids = new[] { 1, 2, 3, 30 };
        var want = LastLogits(m, ids);
        HfCheckpoint.Write(d["qwen"], m, tokenizer: null);
        using (var back = Load(d["qwen"]))
        {
            Assert.Equal(m.Config, back.Config);
            AssertClose(want, LastLogits(back, ids));
        }
        // Shards listed in model.safetensors.index.json, as large checkpoints come.
        Directory.CreateDirectory(d["sharded"]);
        File.Copy(d["qwen/config.json"], d["sharded/config.json"]);
        var all = SafeTensors.Load(d["qwen/model.safetensors"]);
        var names = all.Keys.Order().ToList();
        var shards = new[] { names.Take(names.Count / 2).ToList(), names.Skip(names.Count / 2).ToList() };
        var map = new System.Text.Json.Nodes.JsonObject();
        for (int i = 0; i < 2; i++)
        {
            var file = $"model-0000{i + 1}-of-00002.safetensors";
            SafeTensors.Save(d["sharded/" + file], shards[i].Select(n => KeyValuePair.Create(n, all[n])));
            foreach (var n in shards[i]) map[n] = file;
        }
        File.WriteAllText(d["sharded/model.safetensors.index.json"], new System.Text.Json.Nodes.JsonObject { ["weight_map"] = map }.ToJsonString());
        using (var back = Load(d["sharded"])) AssertClose(want, LastLogits(back, ids));
        // BF16 weights, read into fp32: close, not equal.
        HfCheckpoint.Write(d["bf16"], m, tokenizer: null, dtype: ScalarType.BFloat16);
        using (var back = Load(d["bf16"]))
        {
            Assert.Equal(ScalarType.Float32, back.parameters().First().dtype);
            var got = LastLogits(back, ids);
            for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) < 0.05, $"logit {i}: fp32 {want[i]}, bf16 {got[i]}");
        }
    }

    [Fact]
    public void A_checkpoint_the_decoder_cannot_run_is_a_one_line_error_naming_the_key_or_tensor()
    {
        using var d = new TempDir();
        using var m = Random(Tiny(), seed: 13);
        HfCheckpoint.Write(d["ok"], m, tokenizer: null);
        void Bad(string edit, string expected, Action<string>? change = null)
        {
            var dir = d[Guid.NewGuid().ToString("N")];
            Directory.CreateDirectory(dir);
            foreach (var f in Directory.GetFiles(d["ok"])) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            if (edit.Length > 0) foreach (var (k, v) in System.Text.Json.Nodes.JsonNode.Parse(edit)!.AsObject().ToList()) cfg[k] = v?.DeepClone();
            File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
            change?.Invoke(dir);
            var e = Assert.Throws<ChatForgeException>(() => Load(dir));
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
        Bad("""{"model_type":"mistral"}""", "'model_type' = mistral is not supported (gpt2, llama, qwen2)");
        Bad("""{"use_sliding_window":true}""", "'use_sliding_window'");
        Bad("""{"rope_scaling":{"rope_type":"yarn","factor":4}}""", "'rope_scaling.rope_type' = yarn");
        Bad("""{"hidden_act":"gelu"}""", "'hidden_act' = gelu");
        Bad("""{"num_key_value_heads":3}""", "'num_key_value_heads' = 3");
        Bad("""{"hidden_size":"big"}""", "'hidden_size' must be an integer");
        Bad("""{"intermediate_size":32}""", "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [24, 16], expected [32, 16]");
        Bad("", "missing tensor 'lm_head.weight'", dir =>
        {
            var t = SafeTensors.Load(Path.Combine(dir, "model.safetensors"));
            SafeTensors.Save(Path.Combine(dir, "model.safetensors"), t.Where(kv => kv.Key != "lm_head.weight"));
        });
        Bad("", "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'", dir =>
        {
            var t = SafeTensors.Load(Path.Combine(dir, "model.safetensors"));
            t["model.layers.0.self_attn.q_proj.bias"] = zeros(16);
            SafeTensors.Save(Path.Combine(dir, "model.safetensors"), t);
        });
    }

    [Theory]
    [InlineData("num_key_value_heads", 3)]
    [InlineData("num_attention_heads", 5)]
    public void A_config_that_cannot_be_built_is_an_error_naming_the_key(string key, int value)
    {
        var c = key == "num_key_value_heads" ? Tiny() with { NumKeyValueHeads = value } : Tiny() with { NumAttentionHeads = value };
        var e = Assert.Throws<ChatForgeException>(() => c.Validate("config.json"));
        Assert.Contains($"'{key}' = {value}", e.Message);
    }
}
