using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Util;

namespace ChatForge.Training;

/// <summary>The model's family and shape for a new run.</summary>
public sealed record ModelSpec
{
    /// <summary>"gpt2" (learned positions, LayerNorm, GELU) or "llama" (rotary positions, RMSNorm, SwiGLU, grouped-query attention).</summary>
    public string Architecture { get; init; } = "gpt2";
    public int NLayer { get; init; } = 4;
    public int NHead { get; init; } = 4;
    public int NEmbd { get; init; } = 256;
    /// <summary>Context length in tokens (the model's n_positions or max_position_embeddings).</summary>
    public int BlockSize { get; init; } = 128;
    /// <summary>Dropout on embeddings, attention and residuals (0 for short pretraining runs, as nanoGPT); gpt2 only.</summary>
    public double Dropout { get; init; }
    /// <summary>llama: key/value heads (grouped-query attention; a divisor of n_head); null means n_head.</summary>
    public int? NKvHead { get; init; }
    /// <summary>MLP width; null means 4·n_embd (gpt2) or ⌈8/3·n_embd⌉ rounded up to a multiple of 8 (llama: SwiGLU's three matrices, about GPT-2's parameters).</summary>
    public int? Intermediate { get; init; }
    /// <summary>llama: rotary base θ.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>llama: tie the LM head to the token embedding (as SmolLM2 and Llama 3.2 1B do).</summary>
    public bool TieWordEmbeddings { get; init; } = true;

    public static readonly string[] Architectures = { "gpt2", "llama" };

    public void Validate(string source)
    {
        void Check(bool ok, string key, object? v, string rule)
        {
            if (!ok) throw new ChatForgeException($"{source}: '{key}' = {v} is out of range ({rule})");
        }
        Check(Architectures.Contains(Architecture), "model.architecture", Architecture, string.Join(" or ", Architectures));
        Check(NLayer >= 1, "model.n_layer", NLayer, "≥ 1");
        Check(NHead >= 1, "model.n_head", NHead, "≥ 1");
        Check(NEmbd >= 1 && NEmbd % NHead == 0, "model.n_embd", NEmbd, "a positive multiple of n_head");
        Check(BlockSize >= 2, "model.block_size", BlockSize, "≥ 2");
        Check(Dropout is >= 0 and < 1, "model.dropout", Dropout, "0 ≤ p < 1");
        Check(Architecture == "gpt2" || Dropout == 0, "model.dropout", Dropout, "0 for llama, which has no dropout");
        Check(NKvHead is null || (NKvHead >= 1 && NHead % NKvHead == 0), "model.n_kv_head", NKvHead, "a divisor of n_head");
        Check(NKvHead is null || Architecture == "llama", "model.n_kv_head", NKvHead, "llama only");
        Check(Intermediate is null or >= 1, "model.intermediate", Intermediate, "≥ 1");
        Check(Architecture == "gpt2" || NEmbd / NHead % 2 == 0, "model.n_embd", NEmbd, "an even head size for rotary embeddings");
        Check(RopeTheta > 0, "model.rope_theta", RopeTheta, "> 0");
    }

    /// <summary>A freshly initialised model of this shape over <paramref name="vocabSize"/> ids.</summary>
    public CausalLM Build(int vocabSize, int bosId, int eosId) => Architecture == "llama"
        ? new Llama(new LlamaConfig
        {
            VocabSize = vocabSize, HiddenSize = NEmbd, NumHiddenLayers = NLayer, NumAttentionHeads = NHead, NumKeyValueHeads = NKvHead ?? NHead,
            IntermediateSize = Intermediate ?? (8 * NEmbd / 3 + 7) / 8 * 8, MaxPositionEmbeddings = BlockSize, RopeTheta = RopeTheta,
            TieWordEmbeddings = TieWordEmbeddings, RmsNormEps = 1e-5, BosTokenId = bosId, EosTokenIds = new[] { eosId },
        })
        : new Gpt(new GptConfig
        {
            VocabSize = vocabSize, NPositions = BlockSize, NEmbd = NEmbd, NLayer = NLayer, NHead = NHead, NInner = Intermediate,
            ResidPdrop = Dropout, EmbdPdrop = Dropout, AttnPdrop = Dropout, BosTokenId = bosId, EosTokenId = eosId,
        });
}

/// <summary>Which tokenizer: "byte", "gpt2", "bpe" (trained on the training split with vocab_size ids), or an existing directory (path).</summary>
public sealed record TokenizerSpec
{
    public string Kind { get; init; } = "bpe";
    /// <summary>For kind "bpe": total ids, special tokens included.</summary>
    public int VocabSize { get; init; } = 8192;
    /// <summary>A tokenizer directory to use instead of kind (e.g. from `chatforge tokenizer train`).</summary>
    public string? Path { get; init; }
}

/// <summary>Pretraining: next-token prediction on raw text.</summary>
public sealed record PretrainConfig : RunOptions
{
    public ModelSpec Model { get; init; } = new();
    public TokenizerSpec Tokenizer { get; init; } = new();
    /// <summary>.txt files or {"text"} JSONL; empty means the demo corpora (Moby-Dick + State of the Union).</summary>
    public List<string> Data { get; init; } = new();
    /// <summary>
    /// With the demo corpora: passes of the knowledge-augmented capital facts (per state and pass, six statements,
    /// and in a third of the passes a short paragraph: <see cref="Data.PretrainKnowledge.CapitalFacts"/>) added to
    /// the training split (0: none).
    /// </summary>
    public int CapitalStatements { get; init; } = 300;
    /// <summary>With the demo corpora: passes of the AFINN sentiment lexicon in statement form ("'glad' is a positive word.") (0: none).</summary>
    public int WordStatements { get; init; } = 6;
    /// <summary>
    /// With the demo corpora: passes of a question–answer quiz about the seen states only (mixed training,
    /// Allen-Zhu &amp; Li) (0: none). The held-out states never appear in it.
    /// </summary>
    public int CapitalQuiz { get; init; } = 60;
    /// <summary>With the demo corpora: lines of copy drills (a span written twice: <see cref="Data.PretrainKnowledge.CopyDrills"/>) (0: none).</summary>
    public int CopyDrills { get; init; } = 6000;
    /// <summary>Fraction of documents held out for validation (by a seeded hash of their content).</summary>
    public double ValFraction { get; init; } = 0.05;
    public OptimConfig Optim { get; init; } = new();
    /// <summary>Validation batches per evaluation (fixed windows, the same every time).</summary>
    public int EvalBatches { get; init; } = 20;
    /// <summary>Prompts sampled from the final model (printed and saved in samples.txt).</summary>
    public List<string> SamplePrompts { get; init; } = new() { "Call me", "The State of the Union", "The whale" };
    public int SampleTokens { get; init; } = 60;

    public void Validate(string source)
    {
        void Check(bool ok, string key, object? v, string rule)
        {
            if (!ok) throw new ChatForgeException($"{source}: '{key}' = {v} is out of range ({rule})");
        }
        Model.Validate(source);
        Check(Tokenizer.Path is not null || Tokenizer.Kind is "byte" or "bpe" or "gpt2", "tokenizer.kind", Tokenizer.Kind, "byte, bpe or gpt2");
        Check(Tokenizer.Kind != "bpe" || Tokenizer.VocabSize >= 260, "tokenizer.vocab_size", Tokenizer.VocabSize, "≥ 260 for bpe");
        Check(ValFraction is > 0 and < 1, "val_fraction", ValFraction, "0 < f < 1");
        Check(CapitalStatements >= 0, "capital_statements", CapitalStatements, "≥ 0");
        Check(WordStatements >= 0, "word_statements", WordStatements, "≥ 0");
        Check(CapitalQuiz >= 0, "capital_quiz", CapitalQuiz, "≥ 0");
        Check(CopyDrills >= 0, "copy_drills", CopyDrills, "≥ 0");
        Check(EvalBatches >= 1, "eval_batches", EvalBatches, "≥ 1");
        Check(SampleTokens >= 0, "sample_tokens", SampleTokens, "≥ 0");
        Check(Threads is null or >= 1, "threads", Threads, "≥ 1");
        Optim.Validate(source);
    }

    /// <summary>
    /// The README's default: 4 layers × 256 wide, 128-token context, a byte-level BPE of 8,192 ids
    /// trained on the training split, 1,300 steps of 16 × 128 tokens. Sized to finish within 15
    /// minutes on 2 CPU cores (README: measured figures, and how the tokenizer was chosen).
    /// </summary>
    public static PretrainConfig Demo => new()
    {
        Optim = new OptimConfig
        {
            MaxSteps = 1300, BatchSize = 16, LearningRate = 2e-3, MinLr = 2e-4, WarmupSteps = 100,
            EvalInterval = 250, CheckpointInterval = 250, LogInterval = 25,
        },
    };

    /// <summary>Seconds on any machine: a byte-level 2-layer, 32-wide model, a few steps.</summary>
    public static PretrainConfig Tiny => new()
    {
        Model = new ModelSpec { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 32 },
        Tokenizer = new TokenizerSpec { Kind = "byte" },
        WordStatements = 1, CapitalQuiz = 1, CopyDrills = 10,
        Optim = new OptimConfig
        {
            MaxSteps = 20, BatchSize = 4, LearningRate = 3e-3, MinLr = 3e-4, WarmupSteps = 2,
            LogInterval = 5, EvalInterval = 10, CheckpointInterval = 10,
        },
        EvalBatches = 2,
        SampleTokens = 20,
        SamplePrompts = new() { "The " },
    };

    /// <summary>The preset, overlaid with the keys of a JSON config file (unknown keys are errors).</summary>
    public static PretrainConfig Load(string? preset, string? file) => ConfigMerge.Load(preset, file, Demo, Tiny);
}

/// <summary>Overlays a (partial) JSON config on a preset, then deserializes strictly.</summary>
public static class ConfigMerge
{
    /// <summary>The named preset ("demo" when null, or "tiny"), overlaid with <paramref name="file"/> when given.</summary>
    public static T Load<T>(string? preset, string? file, T demo, T tiny)
    {
        var p = preset switch { null or "demo" => demo, "tiny" => tiny, _ => throw new ChatForgeException($"unknown preset '{preset}' (tiny, demo)") };
        if (file is null) return p;
        if (!File.Exists(file)) throw new ChatForgeException($"{file}: file not found");
        return Overlay(p, File.ReadAllText(file), file);
    }

    public static T Overlay<T>(T preset, string json, string source)
    {
        JsonNode? over;
        try { over = JsonNode.Parse(json, documentOptions: new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (System.Text.Json.JsonException e) { throw new ChatForgeException($"{source}: not valid JSON: {e.Message.Split(". ")[0]}", e); }
        if (over is not JsonObject o) throw new ChatForgeException($"{source}: a config must be a JSON object");
        var merged = System.Text.Json.JsonSerializer.SerializeToNode(preset, Json.Strict)!.AsObject();
        Merge(merged, o);
        return Json.Parse<T>(merged.ToJsonString(), source);
    }

    static void Merge(JsonObject target, JsonObject over)
    {
        foreach (var (k, v) in over)
        {
            if (v is JsonObject vo && target[k] is JsonObject to) Merge(to, vo);
            else target[k] = v?.DeepClone();
        }
    }
}
