using System.Text.Json;
using System.Text.Json.Nodes;

namespace ChatForge.Modeling;

/// <summary>
/// The model's shape, in Hugging Face GPT2Config field names (config.json). Only what the GPT-2
/// architecture needs; other keys of a Hugging Face config.json are ignored when reading.
/// </summary>
public sealed record GptConfig
{
    /// <summary>Token ids the embedding covers (tokenizer vocabulary, specials included).</summary>
    public int VocabSize { get; init; } = 259;
    /// <summary>Context length (learned positions).</summary>
    public int NPositions { get; init; } = 256;
    public int NEmbd { get; init; } = 128;
    public int NLayer { get; init; } = 4;
    public int NHead { get; init; } = 4;
    /// <summary>MLP width; null means 4·n_embd.</summary>
    public int? NInner { get; init; }
    public double ResidPdrop { get; init; }
    public double EmbdPdrop { get; init; }
    public double AttnPdrop { get; init; }
    public double LayerNormEpsilon { get; init; } = 1e-5;
    public double InitializerRange { get; init; } = 0.02;
    public int BosTokenId { get; init; } = 256;
    public int EosTokenId { get; init; } = 256;

    public int HeadSize => NEmbd / NHead;
    public int Inner => NInner ?? 4 * NEmbd;

    public void Validate(string source)
    {
        void Check(bool ok, string key, object value, string rule)
        {
            if (!ok) throw new ChatForgeException($"{source}: '{key}' = {value} is out of range ({rule})");
        }
        Check(VocabSize > 0, "vocab_size", VocabSize, "> 0");
        Check(NPositions > 0, "n_positions", NPositions, "> 0");
        Check(NLayer > 0, "n_layer", NLayer, "> 0");
        Check(NHead > 0, "n_head", NHead, "> 0");
        Check(NEmbd > 0 && NEmbd % NHead == 0, "n_embd", NEmbd, "> 0 and a multiple of n_head");
        Check(Inner > 0, "n_inner", Inner, "> 0");
        foreach (var (k, v) in new[] { ("resid_pdrop", ResidPdrop), ("embd_pdrop", EmbdPdrop), ("attn_pdrop", AttnPdrop) })
            Check(v is >= 0 and < 1, k, v, "0 ≤ p < 1");
        Check(LayerNormEpsilon > 0, "layer_norm_epsilon", LayerNormEpsilon, "> 0");
        Check(BosTokenId >= 0 && BosTokenId < VocabSize, "bos_token_id", BosTokenId, "a token id");
        Check(EosTokenId >= 0 && EosTokenId < VocabSize, "eos_token_id", EosTokenId, "a token id");
    }

    /// <summary>Parameters, with the tied lm_head counted once (HF's num_parameters()).</summary>
    public long ParameterCount =>
        (long)VocabSize * NEmbd + (long)NPositions * NEmbd
        + NLayer * (2L * 2 * NEmbd                                  // ln_1, ln_2
                    + (long)NEmbd * 3 * NEmbd + 3 * NEmbd           // c_attn
                    + (long)NEmbd * NEmbd + NEmbd                   // attn.c_proj
                    + (long)NEmbd * Inner + Inner                   // c_fc
                    + (long)Inner * NEmbd + NEmbd)                  // mlp.c_proj
        + 2L * NEmbd;                                              // ln_f

    /// <summary>Hugging Face config.json (GPT2LMHeadModel).</summary>
    public JsonObject ToHuggingFace() => new()
    {
        ["architectures"] = new JsonArray("GPT2LMHeadModel"),
        ["model_type"] = "gpt2",
        ["vocab_size"] = VocabSize,
        ["n_positions"] = NPositions,
        ["n_ctx"] = NPositions,
        ["n_embd"] = NEmbd,
        ["n_layer"] = NLayer,
        ["n_head"] = NHead,
        ["n_inner"] = NInner,
        ["activation_function"] = "gelu_new",
        ["resid_pdrop"] = ResidPdrop,
        ["embd_pdrop"] = EmbdPdrop,
        ["attn_pdrop"] = AttnPdrop,
        ["layer_norm_epsilon"] = LayerNormEpsilon,
        ["initializer_range"] = InitializerRange,
        ["bos_token_id"] = BosTokenId,
        ["eos_token_id"] = EosTokenId,
        ["scale_attn_weights"] = true,
        ["scale_attn_by_inverse_layer_idx"] = false,
        ["reorder_and_upcast_attn"] = false,
        ["tie_word_embeddings"] = true,
        ["use_cache"] = true,
        ["torch_dtype"] = "float32",
        ["transformers_version"] = "4.46.0",
    };

    /// <summary>Reads Hugging Face's GPT-2 config.json keys; <paramref name="path"/> names the source in errors.</summary>
    public static GptConfig FromHuggingFace(JsonObject o, string path)
    {
        if ((string?)o["model_type"] is { } mt && mt != "gpt2") throw new ChatForgeException($"{path}: 'model_type' = {mt} is not supported (gpt2, llama, qwen2)");
        if ((string?)o["activation_function"] is { } af && af is not ("gelu_new" or "gelu_pytorch_tanh" or "gelu_fast"))
            throw new ChatForgeException($"{path}: activation_function '{af}' is not supported (tanh GELU only)");
        if (o["tie_word_embeddings"] is { } tie && !(bool)tie) throw new ChatForgeException($"{path}: untied lm_head is not supported");
        int Int(string key, int? fallback = null) => o[key] switch
        {
            null when fallback is { } f => f,
            null => throw new ChatForgeException($"{path}: missing key '{key}'"),
            var n => n.GetValueKind() == JsonValueKind.Number ? (int)n : throw new ChatForgeException($"{path}: '{key}' must be an integer"),
        };
        double Dbl(string key, double fallback) => o[key] is { } n ? (double)n : fallback;
        var c = new GptConfig
        {
            VocabSize = Int("vocab_size"),
            NPositions = Int("n_positions"),
            NEmbd = Int("n_embd"),
            NLayer = Int("n_layer"),
            NHead = Int("n_head"),
            NInner = o["n_inner"] is null ? null : Int("n_inner"),
            ResidPdrop = Dbl("resid_pdrop", 0.1),
            EmbdPdrop = Dbl("embd_pdrop", 0.1),
            AttnPdrop = Dbl("attn_pdrop", 0.1),
            LayerNormEpsilon = Dbl("layer_norm_epsilon", 1e-5),
            InitializerRange = Dbl("initializer_range", 0.02),
            BosTokenId = Int("bos_token_id", 50256),
            EosTokenId = Int("eos_token_id", 50256),
        };
        c.Validate(path);
        return c;
    }
}
