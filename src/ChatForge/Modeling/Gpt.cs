using ChatForge.Data;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Modeling;

// GPT-2, in nanoGPT's order: attention, MLP, block, model. Parameter names follow Hugging Face's
// GPT2LMHeadModel (transformer.h.0.attn.c_attn.weight, …) minus the "transformer." prefix that the
// checkpoint code adds. Linear weights are stored [out, in] here; HF's Conv1D stores [in, out], so the
// checkpoint code transposes the Conv1D tensors (c_attn, c_proj, c_fc) on save and load.

/// <summary>Multi-head causal self-attention through scaled_dot_product_attention, with an optional KV cache.</summary>
public sealed class CausalSelfAttention : nn.Module
{
    [ComponentName(Name = "c_attn")] internal readonly LoraLinear CAttn;
    [ComponentName(Name = "c_proj")] internal readonly LoraLinear CProj;
    [ComponentName(Name = "resid_dropout")] readonly Dropout _residDropout;
    readonly int _nHead;
    readonly double _attnPdrop;

    public CausalSelfAttention(GptConfig c) : base("attn")
    {
        CAttn = new LoraLinear(c.NEmbd, 3 * c.NEmbd);
        CProj = new LoraLinear(c.NEmbd, c.NEmbd);
        _residDropout = nn.Dropout(c.ResidPdrop);
        _nHead = c.NHead;
        _attnPdrop = c.AttnPdrop;
        RegisterComponents();
    }

    /// <param name="x">(B, T, C)</param>
    /// <param name="mask">null for plain causal attention, else a boolean (B, 1, T, Tk) mask, true = may attend</param>
    public Tensor Forward(Tensor x, Tensor? mask, KvCache? cache, int layer)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var qkv = CAttn.call(x);                                          // (B, T, 3C)
        var parts = qkv.split(c, dim: 2);
        var q = parts[0].view(b, t, _nHead, c / _nHead).transpose(1, 2);  // (B, nh, T, hs)
        var k = parts[1].view(b, t, _nHead, c / _nHead).transpose(1, 2);
        var v = parts[2].view(b, t, _nHead, c / _nHead).transpose(1, 2);
        if (cache is not null) (k, v) = cache.Append(layer, k, v);       // (B, nh, Tk, hs)
        double p = training ? _attnPdrop : 0.0;
        // Causal flag only when queries and keys are the same positions; with a cache the mask (or,
        // for one new token, nothing) does the job.
        bool causal = mask is null && (cache is null || cache.Length == 0) && t > 1;
        var y = F.scaled_dot_product_attention(q, k, v, attn_mask: mask, p: p, is_casual: causal);
        y = y.transpose(1, 2).contiguous().view(b, t, c);                 // re-assemble heads
        return _residDropout.call(CProj.call(y));
    }
}

/// <summary>Feed-forward: Linear → tanh-GELU → Linear.</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "c_fc")] internal readonly LoraLinear CFc;
    [ComponentName(Name = "c_proj")] internal readonly LoraLinear CProj;
    [ComponentName(Name = "dropout")] readonly Dropout _dropout;

    public Mlp(GptConfig c) : base("mlp")
    {
        CFc = new LoraLinear(c.NEmbd, c.Inner);
        CProj = new LoraLinear(c.Inner, c.NEmbd);
        _dropout = nn.Dropout(c.ResidPdrop);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        _dropout.call(CProj.call(F.gelu(CFc.call(x), GELU.Approximate.tanh)));
}

/// <summary>Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).</summary>
public sealed class Block : nn.Module
{
    [ComponentName(Name = "ln_1")] readonly LayerNorm _ln1;
    [ComponentName(Name = "attn")] internal readonly CausalSelfAttention Attn;
    [ComponentName(Name = "ln_2")] readonly LayerNorm _ln2;
    [ComponentName(Name = "mlp")] internal readonly Mlp Mlp;

    public Block(GptConfig c) : base("block")
    {
        _ln1 = nn.LayerNorm(c.NEmbd, c.LayerNormEpsilon);
        Attn = new CausalSelfAttention(c);
        _ln2 = nn.LayerNorm(c.NEmbd, c.LayerNormEpsilon);
        Mlp = new Mlp(c);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor? mask, KvCache? cache, int layer)
    {
        x = x + Attn.Forward(_ln1.call(x), mask, cache, layer);
        return x + Mlp.call(_ln2.call(x));
    }
}

/// <summary>The GPT-2 language model: token + position embeddings, blocks, final LayerNorm, tied LM head.</summary>
public sealed class Gpt : CausalLM
{
    public GptConfig Config { get; }
    [ComponentName(Name = "wte")] readonly Embedding _wte;
    [ComponentName(Name = "wpe")] readonly Embedding _wpe;
    [ComponentName(Name = "drop")] readonly Dropout _drop;
    [ComponentName(Name = "h")] readonly ModuleList<Block> _h;
    [ComponentName(Name = "ln_f")] readonly LayerNorm _lnF;

    public Gpt(GptConfig config) : base("transformer")
    {
        config.Validate("model config");
        Config = config;
        _wte = nn.Embedding(config.VocabSize, config.NEmbd);
        _wpe = nn.Embedding(config.NPositions, config.NEmbd);
        _drop = nn.Dropout(config.EmbdPdrop);
        _h = new ModuleList<Block>(Enumerable.Range(0, config.NLayer).Select(_ => new Block(config)).ToArray());
        _lnF = nn.LayerNorm(config.NEmbd, config.LayerNormEpsilon);
        RegisterComponents();
        InitWeights();
    }

    public override string ModelType => "gpt2";
    public override int VocabSize => Config.VocabSize;
    public override int HiddenSize => Config.NEmbd;
    public override int Context => Config.NPositions;
    public override string HfPrefix => "transformer.";
    public override IReadOnlyList<string> EmbeddingParameters { get; } = new[] { "wte.weight", "wpe.weight" };
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "c_attn", "c_proj", "c_fc" };
    public override System.Text.Json.Nodes.JsonObject HfConfig() => Config.ToHuggingFace();
    public override KvCache NewCache(int batch, int capacity, Device device) =>
        new(Config.NLayer, batch, Config.NHead, Math.Min(capacity, Config.NPositions), Config.HeadSize, device);

    /// <summary>Every linear layer by its module path (h.0.attn.c_attn, …), for LoRA.</summary>
    public override IEnumerable<(string Path, LoraLinear Linear)> Linears()
    {
        for (int i = 0; i < _h.Count; i++)
        {
            var b = _h[i];
            yield return ($"h.{i}.attn.c_attn", b.Attn.CAttn);
            yield return ($"h.{i}.attn.c_proj", b.Attn.CProj);
            yield return ($"h.{i}.mlp.c_fc", b.Mlp.CFc);
            yield return ($"h.{i}.mlp.c_proj", b.Mlp.CProj);
        }
    }
    public override Parameter TokenEmbedding => _wte.weight!;

    /// <summary>GPT-2's init: N(0, 0.02) weights, zero biases, residual projections scaled by 1/√(2·n_layer).</summary>
    void InitWeights()
    {
        using var _ = no_grad();
        double std = Config.InitializerRange;
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal)) { if (!name.Contains("ln_", StringComparison.Ordinal)) p.zero_(); continue; }
            if (name.Contains("ln_", StringComparison.Ordinal)) continue; // LayerNorm weights stay 1
            double s = name.EndsWith("c_proj.weight", StringComparison.Ordinal) ? std / Math.Sqrt(2.0 * Config.NLayer) : std;
            nn.init.normal_(p, 0, s);
        }
    }

    public override Tensor Hidden(Tensor idx, Tensor? positions = null, Tensor? mask = null, KvCache? cache = null)
    {
        (positions, mask) = KvCache.Inputs(idx, positions, mask, cache, Config.NPositions);
        var x = _drop.call(_wte.call(idx) + _wpe.call(positions));
        for (int l = 0; l < _h.Count; l++) x = _h[l].Forward(x, mask, cache, l);
        cache?.Advance((int)idx.shape[1]);
        return _lnF.call(x);
    }

    /// <summary>The tied LM head: hidden (…, C) → logits (…, vocab).</summary>
    public override Tensor Logits(Tensor hidden) => F.linear(hidden, _wte.weight!);
}
