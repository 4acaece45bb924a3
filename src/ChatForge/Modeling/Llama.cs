using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Modeling;

// The Llama family (Llama, Qwen2, SmolLM2), as Hugging Face's modeling_llama.py defines it, in nanoGPT's order:
// RMSNorm, rotary embeddings, attention with grouped-query heads, the SwiGLU MLP, the decoder layer, the model.
// Parameter names are LlamaForCausalLM's (model.layers.0.self_attn.q_proj.weight, …, lm_head.weight).

/// <summary>The config.json fields of a Llama-family model that the forward pass reads (names as Hugging Face's).</summary>
public sealed record LlamaConfig
{
    /// <summary>Hugging Face's model_type: llama or qwen2 (Qwen2 always has q/k/v biases).</summary>
    public string ModelType { get; init; } = "llama";
    public int VocabSize { get; init; } = 32000;
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>Key/value heads (grouped-query attention): each is shared by NumAttentionHeads / NumKeyValueHeads query heads.</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Biases on q_proj, k_proj and v_proj (always for Qwen2), and on o_proj too for a llama model that sets it (as LlamaAttention does).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>rope_scaling of type "llama3" (Llama 3.1/3.2), or null.</summary>
    public Llama3RopeScaling? RopeScaling { get; init; }
    public double InitializerRange { get; init; } = 0.02;
    /// <summary>bos_token_id and eos_token_id as config.json has them (eos may be a list in Llama 3), kept for the round trip.</summary>
    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = Array.Empty<int>();

    public static readonly string[] ModelTypes = { "llama", "qwen2" };

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public void Validate(string source)
    {
        void Check(bool ok, string key, object value, string range)
        {
            if (!ok) throw new ChatForgeException($"{source}: '{key}' = {value} is out of range ({range})");
        }
        Check(ModelTypes.Contains(ModelType), "model_type", ModelType, string.Join(", ", ModelTypes));
        Check(VocabSize >= 1, "vocab_size", VocabSize, "≥ 1");
        Check(NumHiddenLayers >= 1, "num_hidden_layers", NumHiddenLayers, "≥ 1");
        Check(NumAttentionHeads >= 1 && HiddenSize % NumAttentionHeads == 0, "num_attention_heads", NumAttentionHeads, "a divisor of hidden_size");
        Check(HeadDim % 2 == 0, "hidden_size", HiddenSize, "an even head size");
        Check(NumKeyValueHeads >= 1 && NumAttentionHeads % NumKeyValueHeads == 0, "num_key_value_heads", NumKeyValueHeads, "a divisor of num_attention_heads");
        Check(IntermediateSize >= 1, "intermediate_size", IntermediateSize, "≥ 1");
        Check(MaxPositionEmbeddings >= 1, "max_position_embeddings", MaxPositionEmbeddings, "≥ 1");
        Check(RmsNormEps > 0, "rms_norm_eps", RmsNormEps, "> 0");
        Check(RopeTheta > 0, "rope_theta", RopeTheta, "> 0");
        Check(ModelType != "qwen2" || AttentionBias, "attention_bias", AttentionBias, "qwen2 has q/k/v biases");
    }

    /// <summary>Hugging Face config.json (LlamaForCausalLM or Qwen2ForCausalLM), fp32 weights.</summary>
    public JsonObject ToHuggingFace()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(ModelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = ModelType, ["vocab_size"] = VocabSize, ["hidden_size"] = HiddenSize, ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers, ["num_attention_heads"] = NumAttentionHeads, ["num_key_value_heads"] = NumKeyValueHeads,
            ["max_position_embeddings"] = MaxPositionEmbeddings, ["rms_norm_eps"] = RmsNormEps, ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TieWordEmbeddings, ["hidden_act"] = "silu", ["initializer_range"] = InitializerRange,
            ["use_cache"] = true, ["torch_dtype"] = "float32", ["transformers_version"] = "4.46.0",
        };
        if (ModelType == "llama") { o["attention_bias"] = AttentionBias; o["mlp_bias"] = false; }
        else o["use_sliding_window"] = false;
        if (BosTokenId is { } bos) o["bos_token_id"] = bos;
        if (EosTokenIds.Length == 1) o["eos_token_id"] = EosTokenIds[0];
        else if (EosTokenIds.Length > 1) o["eos_token_id"] = new JsonArray(EosTokenIds.Select(i => (JsonNode)i!).ToArray());
        if (RopeScaling is { } s)
            o["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor,
                ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
            };
        return o;
    }

    /// <summary>
    /// Reads a Llama or Qwen2 config.json; what the decoder cannot run (another model_type, sliding-window attention, another
    /// rope_scaling, a head_dim that is not hidden_size / heads, …) is an error naming <paramref name="path"/> and the key.
    /// </summary>
    public static LlamaConfig FromHuggingFace(JsonObject root, string path)
    {
        JsonNode? Get(string key) => root.TryGetPropertyValue(key, out var v) ? v : null;
        ChatForgeException Bad(string key, string why) => new($"{path}: '{key}' {why}");
        T Value<T>(JsonNode v, string key, string what)
        {
            try { return v.GetValue<T>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(key, what); }
        }
        int Int(string key, int? fallback = null) =>
            Get(key) is { } v ? Value<int>(v, key, "must be an integer") : fallback ?? throw Bad(key, "is missing");
        double Num(string key, double fallback) => Get(key) is { } v ? Value<double>(v, key, "must be a number") : fallback;
        bool Flag(string key, bool fallback) => Get(key) is { } v ? Value<bool>(v, key, "must be true or false") : fallback;
        string? Text(string key) => Get(key) is { } v ? Value<string>(v, key, "must be a string") : null;

        var type = Text("model_type") ?? throw Bad("model_type", "is missing");
        if (!ModelTypes.Contains(type)) throw Bad("model_type", $"= {type} is not supported ({string.Join(", ", ModelTypes)}; GPT-2 checkpoints load as gpt2)");
        if (Text("hidden_act") is { } act && act != "silu") throw Bad("hidden_act", $"= {act} is not supported (silu)");
        if (Flag("use_sliding_window", false)) throw Bad("use_sliding_window", "= true: sliding-window attention is not supported");
        if (Flag("mlp_bias", false)) throw Bad("mlp_bias", "= true is not supported");
        int heads = Int("num_attention_heads"), hidden = Int("hidden_size");
        if (Get("head_dim") is not null && Int("head_dim") != hidden / heads) throw Bad("head_dim", $"= {Int("head_dim")} is not supported (hidden_size / num_attention_heads = {hidden / heads})");
        Llama3RopeScaling? scaling = null;
        if (Get("rope_scaling") is JsonObject rs && (rs["rope_type"] ?? rs["type"]) is var kindNode
            && (kindNode is null ? null : Value<string>(kindNode, "rope_scaling.rope_type", "must be a string")) is var kind && kind != "default")
        {
            if (kind != "llama3") throw Bad("rope_scaling.rope_type", $"= {kind ?? "(missing)"} is not supported (llama3)");
            double F(string k) => rs[k] is { } v ? Value<double>(v, "rope_scaling." + k, "must be a number") : throw Bad("rope_scaling." + k, "is missing");
            scaling = new Llama3RopeScaling(F("factor"), F("low_freq_factor"), F("high_freq_factor"), (int)F("original_max_position_embeddings"));
        }
        int[] eos = Get("eos_token_id") switch
        {
            null => Array.Empty<int>(),
            JsonArray a => a.Select((n, i) => n is null ? throw Bad($"eos_token_id[{i}]", "must be an integer") : Value<int>(n, $"eos_token_id[{i}]", "must be an integer")).ToArray(),
            var n => new[] { Value<int>(n, "eos_token_id", "must be an integer or a list of integers") },
        };
        var c = new LlamaConfig
        {
            ModelType = type,
            VocabSize = Int("vocab_size"), HiddenSize = hidden, IntermediateSize = Int("intermediate_size"), NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = heads, NumKeyValueHeads = Int("num_key_value_heads", heads), MaxPositionEmbeddings = Int("max_position_embeddings"),
            RmsNormEps = Num("rms_norm_eps", 1e-6), RopeTheta = Num("rope_theta", 10000), TieWordEmbeddings = Flag("tie_word_embeddings", false),
            AttentionBias = type == "qwen2" || Flag("attention_bias", false),   // Qwen2 always has q/k/v biases
            RopeScaling = scaling, InitializerRange = Num("initializer_range", 0.02),
            BosTokenId = Get("bos_token_id") is null ? null : Int("bos_token_id"), EosTokenIds = eos,
        };
        c.Validate(path);
        return c;
    }
}

/// <summary>Llama 3's rope_scaling: long wavelengths divided by <see cref="Factor"/>, short ones kept, a smooth ramp between.</summary>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>Root-mean-square normalisation: x / √(mean(x²) + ε) · weight, computed in fp32.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    public RmsNorm(int size, double eps) : base("norm")
    {
        weight = nn.Parameter(ones(size));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = x.to(ScalarType.Float32);
        h = h * (h.pow(2).mean(new long[] { -1 }, keepdim: true) + _eps).rsqrt();
        return weight * h.to(x.dtype);
    }
}

/// <summary>Rotary position embeddings with Hugging Face's rotate-half convention (the two halves of each head rotate together).</summary>
public static class Rope
{
    /// <summary>The inverse frequencies θ^(−2i/d), i &lt; d/2, with Llama 3's scaling when configured.</summary>
    public static double[] InverseFrequencies(LlamaConfig c)
    {
        int d = c.HeadDim;
        var inv = Enumerable.Range(0, d / 2).Select(i => 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d)).ToArray();
        if (c.RopeScaling is not { } s) return inv;
        double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        return inv.Select(f =>
        {
            double wavelen = 2 * Math.PI / f;
            if (wavelen < highWavelen) return f;                 // high frequencies: kept
            if (wavelen > lowWavelen) return f / s.Factor;       // low frequencies: scaled
            double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
            return (1 - smooth) * f / s.Factor + smooth * f;
        }).ToArray();
    }

    /// <summary>cos and sin (B, 1, T, d) for position ids (B, T): the angles position · inv_freq, each half repeated.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positions, double[] invFreq)
    {
        var inv = tensor(invFreq.Select(x => (float)x).ToArray(), device: positions.device);
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * inv;       // (B, T, d/2)
        var emb = cat(new[] { freqs, freqs }, -1).unsqueeze(1);                  // (B, 1, T, d)
        return (emb.cos(), emb.sin());
    }

    static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        return cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, -1);
    }

    /// <summary>x (B, H, T, d) rotated: x·cos + rotate_half(x)·sin.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => x * cos + RotateHalf(x) * sin;
}

public sealed class LlamaAttention : nn.Module
{
    [ComponentName(Name = "q_proj")] internal readonly LoraLinear QProj;
    [ComponentName(Name = "k_proj")] internal readonly LoraLinear KProj;
    [ComponentName(Name = "v_proj")] internal readonly LoraLinear VProj;
    [ComponentName(Name = "o_proj")] internal readonly LoraLinear OProj;
    readonly LlamaConfig _c;

    public LlamaAttention(LlamaConfig c) : base("self_attn")
    {
        _c = c;
        QProj = new LoraLinear(c.HiddenSize, c.NumAttentionHeads * c.HeadDim, hasBias: c.AttentionBias);
        KProj = new LoraLinear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, hasBias: c.AttentionBias);
        VProj = new LoraLinear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, hasBias: c.AttentionBias);
        OProj = new LoraLinear(c.NumAttentionHeads * c.HeadDim, c.HiddenSize, hasBias: c.AttentionBias && c.ModelType == "llama");   // Qwen2: never
        RegisterComponents();
    }

    /// <param name="mask">null for causal attention, else a boolean (B, 1, T, Tk) mask, true = may attend</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        long b = x.shape[0], t = x.shape[1];
        int h = _c.NumAttentionHeads, kv = _c.NumKeyValueHeads, d = _c.HeadDim;
        var q = Rope.Apply(QProj.call(x).view(b, t, h, d).transpose(1, 2), cos, sin);     // (B, H, T, d)
        var k = Rope.Apply(KProj.call(x).view(b, t, kv, d).transpose(1, 2), cos, sin);    // (B, KV, T, d)
        var v = VProj.call(x).view(b, t, kv, d).transpose(1, 2);
        if (cache is not null) (k, v) = cache.Append(layer, k, v);                        // the cache holds the KV heads
        if (kv != h)
        {
            // repeat_kv: each key/value head serves h / kv query heads, in order.
            k = k.repeat_interleave(h / kv, dim: 1);
            v = v.repeat_interleave(h / kv, dim: 1);
        }
        bool causal = mask is null && (cache is null || cache.Length == 0) && t > 1;
        var y = F.scaled_dot_product_attention(q, k, v, attn_mask: mask, is_casual: causal);
        return OProj.call(y.transpose(1, 2).contiguous().view(b, t, h * d));
    }
}

/// <summary>SwiGLU: down_proj(silu(gate_proj(x)) · up_proj(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] internal readonly LoraLinear GateProj;
    [ComponentName(Name = "up_proj")] internal readonly LoraLinear UpProj;
    [ComponentName(Name = "down_proj")] internal readonly LoraLinear DownProj;

    public LlamaMlp(LlamaConfig c) : base("mlp")
    {
        GateProj = new LoraLinear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        UpProj = new LoraLinear(c.HiddenSize, c.IntermediateSize, hasBias: false);
        DownProj = new LoraLinear(c.IntermediateSize, c.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => DownProj.call(F.silu(GateProj.call(x)) * UpProj.call(x));
}

public sealed class LlamaDecoderLayer : nn.Module
{
    [ComponentName(Name = "input_layernorm")] readonly RmsNorm _inputNorm;
    [ComponentName(Name = "self_attn")] internal readonly LlamaAttention Attn;
    [ComponentName(Name = "post_attention_layernorm")] readonly RmsNorm _postNorm;
    [ComponentName(Name = "mlp")] internal readonly LlamaMlp Mlp;

    public LlamaDecoderLayer(LlamaConfig c) : base("layer")
    {
        _inputNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        Attn = new LlamaAttention(c);
        _postNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        Mlp = new LlamaMlp(c);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        x = x + Attn.Forward(_inputNorm.call(x), cos, sin, mask, cache, layer);
        return x + Mlp.call(_postNorm.call(x));
    }
}

/// <summary>The decoder stack under LlamaForCausalLM's "model." prefix: embed_tokens, layers, norm.</summary>
public sealed class LlamaBody : nn.Module
{
    [ComponentName(Name = "embed_tokens")] internal readonly Embedding EmbedTokens;
    [ComponentName(Name = "layers")] internal readonly ModuleList<LlamaDecoderLayer> Layers;
    [ComponentName(Name = "norm")] internal readonly RmsNorm Norm;

    public LlamaBody(LlamaConfig c) : base("model")
    {
        EmbedTokens = nn.Embedding(c.VocabSize, c.HiddenSize);
        Layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c)).ToArray());
        Norm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }
}

/// <summary>LlamaForCausalLM (or Qwen2ForCausalLM): the decoder and the LM head (tied to embed_tokens when the config says so).</summary>
public sealed class Llama : CausalLM
{
    public LlamaConfig Config { get; }
    [ComponentName(Name = "model")] readonly LlamaBody _model;
    [ComponentName(Name = "lm_head")] readonly Linear? _lmHead;
    readonly double[] _invFreq;

    public Llama(LlamaConfig config) : base("llama")
    {
        config.Validate("model config");
        Config = config;
        _model = new LlamaBody(config);
        _lmHead = config.TieWordEmbeddings ? null : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        _invFreq = Rope.InverseFrequencies(config);
        RegisterComponents();
        // Hugging Face's _init_weights: linear and embedding weights N(0, initializer_range), biases 0, norms 1.
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
            if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (!name.EndsWith("norm.weight", StringComparison.Ordinal)) nn.init.normal_(p, 0, config.InitializerRange);
    }

    public override string ModelType => Config.ModelType;
    public override int VocabSize => Config.VocabSize;
    public override int HiddenSize => Config.HiddenSize;
    public override int Context => Config.MaxPositionEmbeddings;
    public override Parameter TokenEmbedding => _model.EmbedTokens.weight!;
    public override string HfPrefix => "";
    public override IReadOnlyList<string> EmbeddingParameters { get; } = new[] { "model.embed_tokens.weight" };
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };
    public override JsonObject HfConfig() => Config.ToHuggingFace();
    public override IReadOnlyList<string> LmHeadOnly => _lmHead is null ? Array.Empty<string>() : new[] { "lm_head.weight" };

    public override IEnumerable<(string Path, LoraLinear Linear)> Linears()
    {
        for (int i = 0; i < _model.Layers.Count; i++)
        {
            var l = _model.Layers[i];
            string p = $"model.layers.{i}.";
            yield return (p + "self_attn.q_proj", l.Attn.QProj);
            yield return (p + "self_attn.k_proj", l.Attn.KProj);
            yield return (p + "self_attn.v_proj", l.Attn.VProj);
            yield return (p + "self_attn.o_proj", l.Attn.OProj);
            yield return (p + "mlp.gate_proj", l.Mlp.GateProj);
            yield return (p + "mlp.up_proj", l.Mlp.UpProj);
            yield return (p + "mlp.down_proj", l.Mlp.DownProj);
        }
    }

    /// <summary>A KV cache for this model: one entry per key/value head (fewer than the query heads with GQA).</summary>
    public override KvCache NewCache(int batch, int capacity, Device device) =>
        new(Config.NumHiddenLayers, batch, Config.NumKeyValueHeads, Math.Min(capacity, Config.MaxPositionEmbeddings), Config.HeadDim, device);

    public override Tensor Hidden(Tensor idx, Tensor? positions = null, Tensor? mask = null, KvCache? cache = null)
    {
        (positions, mask) = KvCache.Inputs(idx, positions, mask, cache, Config.MaxPositionEmbeddings);
        var (cos, sin) = Rope.CosSin(positions, _invFreq);
        var x = _model.EmbedTokens.call(idx);
        for (int l = 0; l < _model.Layers.Count; l++) x = _model.Layers[l].Forward(x, cos, sin, mask, cache, l);
        cache?.Advance((int)idx.shape[1]);
        return _model.Norm.call(x);
    }

    /// <summary>hidden (…, C) → logits (…, vocab), through lm_head or the tied embedding.</summary>
    public override Tensor Logits(Tensor hidden) => F.linear(hidden, _lmHead?.weight ?? _model.EmbedTokens.weight!);
}
