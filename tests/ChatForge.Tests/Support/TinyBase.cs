using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Tests.Support;

/// <summary>A randomly initialised byte-level model with a 128-token context, saved in HF layout (fast to make).</summary>
public static class TinyBase
{
    public static GptConfig Config => new() { VocabSize = 259, NPositions = 128, NEmbd = 32, NLayer = 2, NHead = 2, BosTokenId = 256, EosTokenId = 256 };

    public static string Create(string dir, long seed = 7)
    {
        manual_seed(seed);
        using var m = new Gpt(Config);
        HfCheckpoint.Write(dir, m, new ByteTokenizer());
        return dir;
    }
}
