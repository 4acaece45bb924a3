using System.Globalization;
using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Util;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// Llama-family weights in Hugging Face's layout: config.json (model_type llama or qwen2) and model.safetensors, or
/// shards listed in model.safetensors.index.json, with LlamaForCausalLM's tensor names. F32, F16 and BF16 weights are
/// read into fp32. Loading is assertive: a missing, unexpected or misshapen tensor, or a config the decoder cannot run
/// (another model_type, sliding-window attention, another rope_scaling, …) is a one-line error naming the file and key.
/// Tokenizer files and chat templates come with the rest of issue 14.
/// </summary>
public static class LlamaCheckpoint
{
    public static readonly string[] ModelTypes = { "llama", "qwen2" };

    /// <summary>The decoder's config from a config.json.</summary>
    public static LlamaConfig ReadConfig(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: no such file");
        JsonObject root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ChatForgeException($"{path}: not a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new ChatForgeException($"{path}: invalid JSON: {e.Message}"); }
        JsonNode? Get(string key) => root.TryGetPropertyValue(key, out var v) ? v : null;
        ChatForgeException Bad(string key, string why) => new($"{path}: '{key}' {why}");
        int Int(string key, int? fallback = null)
        {
            var v = Get(key);
            if (v is null) return fallback ?? throw Bad(key, "is missing");
            try { return v.GetValue<int>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(key, "must be an integer"); }
        }
        double Num(string key, double fallback)
        {
            var v = Get(key);
            if (v is null) return fallback;
            try { return v.GetValue<double>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(key, "must be a number"); }
        }
        bool Flag(string key, bool fallback)
        {
            var v = Get(key);
            if (v is null) return fallback;
            try { return v.GetValue<bool>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(key, "must be true or false"); }
        }

        var type = Get("model_type")?.GetValue<string>() ?? throw Bad("model_type", "is missing");
        if (!ModelTypes.Contains(type)) throw Bad("model_type", $"= {type} is not supported ({string.Join(", ", ModelTypes)}; GPT-2 checkpoints load as gpt2)");
        if (Get("hidden_act")?.GetValue<string>() is { } act && act != "silu") throw Bad("hidden_act", $"= {act} is not supported (silu)");
        if (Flag("use_sliding_window", false)) throw Bad("use_sliding_window", "= true: sliding-window attention is not supported");
        if (Flag("mlp_bias", false)) throw Bad("mlp_bias", "= true is not supported");
        int heads = Int("num_attention_heads"), hidden = Int("hidden_size");
        if (Get("head_dim") is not null && Int("head_dim") != hidden / heads) throw Bad("head_dim", $"= {Int("head_dim")} is not supported (hidden_size / num_attention_heads = {hidden / heads})");
        Llama3RopeScaling? scaling = null;
        if (Get("rope_scaling") is JsonObject rs)
        {
            var kind = (rs["rope_type"] ?? rs["type"])?.GetValue<string>();
            if (kind != "llama3") throw Bad("rope_scaling.rope_type", $"= {kind ?? "(missing)"} is not supported (llama3)");
            double F(string k) => rs[k]?.GetValue<double>() ?? throw Bad("rope_scaling." + k, "is missing");
            scaling = new Llama3RopeScaling(F("factor"), F("low_freq_factor"), F("high_freq_factor"), (int)F("original_max_position_embeddings"));
        }
        var c = new LlamaConfig
        {
            VocabSize = Int("vocab_size"), HiddenSize = hidden, IntermediateSize = Int("intermediate_size"), NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = heads, NumKeyValueHeads = Int("num_key_value_heads", heads), MaxPositionEmbeddings = Int("max_position_embeddings"),
            RmsNormEps = Num("rms_norm_eps", 1e-6), RopeTheta = Num("rope_theta", 10000), TieWordEmbeddings = Flag("tie_word_embeddings", false),
            AttentionBias = Flag("attention_bias", type == "qwen2"),   // Qwen2 always has q/k/v biases
            RopeScaling = scaling,
        };
        c.Validate(path);
        return c;
    }

    /// <summary>The model in <paramref name="dir"/>: its config and weights, checked name by name and shape by shape.</summary>
    public static Llama Load(string dir, Device? device = null)
    {
        var c = ReadConfig(Path.Combine(dir, "config.json"));
        var files = WeightFiles(dir);
        var tensors = new Dictionary<string, (Tensor Tensor, string File)>();
        foreach (var f in files)
            foreach (var (name, t) in SafeTensors.Load(f))
                tensors[name] = (t, f);
        var m = new Llama(c);
        try
        {
            using var _ = no_grad();
            var expected = m.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in expected)
            {
                if (!tensors.TryGetValue(name, out var found)) throw new ChatForgeException($"{dir}: tensor '{name}' is missing from {string.Join(", ", files.Select(Path.GetFileName))}");
                if (!found.Tensor.shape.SequenceEqual(p.shape))
                    throw new ChatForgeException($"{found.File}: tensor '{name}' has shape [{string.Join(", ", found.Tensor.shape)}], the config needs [{string.Join(", ", p.shape)}]");
                p.copy_(found.Tensor.to(ScalarType.Float32));
            }
            // Tolerated extras: a tied checkpoint's copy of lm_head, old checkpoints' rotary buffers.
            foreach (var (name, found) in tensors)
                if (!expected.ContainsKey(name) && !(name == "lm_head.weight" && c.TieWordEmbeddings) && !name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal))
                    throw new ChatForgeException($"{found.File}: unexpected tensor '{name}' (not a {string.Join("/", ModelTypes)} parameter of this config)");
        }
        catch
        {
            m.Dispose();
            throw;
        }
        finally
        {
            foreach (var (t, _) in tensors.Values) t.Dispose();
        }
        if (device is not null) m.to(device);
        m.eval();
        return m;
    }

    /// <summary>model.safetensors, or the shards model.safetensors.index.json lists (its weight_map's files).</summary>
    static List<string> WeightFiles(string dir)
    {
        var single = Path.Combine(dir, "model.safetensors");
        var index = Path.Combine(dir, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            var map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                      ?? throw new ChatForgeException($"{index}: 'weight_map' is missing");
            var files = map.Select(kv => kv.Value?.GetValue<string>() ?? throw new ChatForgeException($"{index}: 'weight_map.{kv.Key}' is not a file name"))
                           .Distinct().Select(f => Path.Combine(dir, f)).ToList();
            foreach (var f in files) if (!File.Exists(f)) throw new ChatForgeException($"{index}: shard '{Path.GetFileName(f)}' is missing");
            return files;
        }
        if (File.Exists(single)) return new() { single };
        throw new ChatForgeException($"{dir}: no model.safetensors or model.safetensors.index.json");
    }

    /// <summary>Writes config.json and model.safetensors (fp32, or <paramref name="dtype"/>) in LlamaForCausalLM's layout.</summary>
    public static void Save(Llama m, string dir, string modelType = "llama", ScalarType dtype = ScalarType.Float32)
    {
        if (!ModelTypes.Contains(modelType)) throw new ChatForgeException($"model_type {modelType} is not supported ({string.Join(", ", ModelTypes)})");
        Directory.CreateDirectory(dir);
        var c = m.Config;
        var cfg = new JsonObject
        {
            ["architectures"] = new JsonArray(modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = modelType, ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.HiddenSize, ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumHiddenLayers, ["num_attention_heads"] = c.NumAttentionHeads, ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings, ["rms_norm_eps"] = c.RmsNormEps, ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = c.TieWordEmbeddings, ["hidden_act"] = "silu",
            ["torch_dtype"] = dtype == ScalarType.BFloat16 ? "bfloat16" : dtype == ScalarType.Float16 ? "float16" : "float32",
        };
        if (modelType == "llama") cfg["attention_bias"] = c.AttentionBias;
        else if (!c.AttentionBias) throw new ChatForgeException("a qwen2 checkpoint has q/k/v biases: the config needs attention_bias");
        if (c.RopeScaling is { } s)
            cfg["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor,
                ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
            };
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(dir, "model.safetensors"),
            m.named_parameters().Select(p => KeyValuePair.Create(p.name, p.parameter.detach().to(dtype))),
            new Dictionary<string, string> { ["format"] = "pt" });
    }
}
