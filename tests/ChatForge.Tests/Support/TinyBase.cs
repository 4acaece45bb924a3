using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Tests.Support;

/// <summary>
/// A randomly initialised byte-level model with a 128-token context, saved in HF layout (fast to make), of either family:
/// "gpt2", "llama" (grouped-query: 4 query heads share 2 key/value heads; tied embeddings, as SmolLM2) or "qwen2"
/// (q/k/v biases, untied head).
/// </summary>
public static class TinyBase
{
    public static readonly string[] Families = { "gpt2", "llama", "qwen2" };

    public static GptConfig Config => new() { VocabSize = 259, NPositions = 128, NEmbd = 32, NLayer = 2, NHead = 2, BosTokenId = 256, EosTokenId = 256 };

    public static LlamaConfig LlamaConfig(string family = "llama") => new()
    {
        ModelType = family, VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4,
        NumKeyValueHeads = 2, MaxPositionEmbeddings = 128, RmsNormEps = 1e-5, TieWordEmbeddings = family == "llama",
        AttentionBias = family == "qwen2", BosTokenId = 256, EosTokenIds = new[] { 256 },
    };

    public static CausalLM Build(string family = "gpt2") => family == "gpt2" ? new Gpt(Config) : new Llama(LlamaConfig(family));

    public static string Create(string dir, long seed = 7, string family = "gpt2")
    {
        manual_seed(seed);
        using var m = Build(family);
        HfCheckpoint.Write(dir, m, new ByteTokenizer());
        return dir;
    }
}
