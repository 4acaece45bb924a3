using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Evaluation;

/// <summary>Held-out language-model loss: nats per token, perplexity, and nats per byte (comparable across tokenizers).</summary>
public static class Perplexity
{
    /// <summary>Cross-entropy over fixed windows of a token stream.</summary>
    public static Dictionary<string, double> OnWindows(Gpt model, ITokenizer tok, TokenStream s, long[] offsets, int blockSize, int batch)
    {
        double nats = 0, count = 0, bytes = 0;
        var device = model.TokenEmbedding.device;
        for (int i = 0; i < offsets.Length; i += batch)
        {
            using var scope = NewDisposeScope();
            var chunk = offsets.Skip(i).Take(batch).ToArray();
            var (x, y) = CausalBatch.Windows(s, chunk, blockSize, device);
            var (sum, n) = LogProbs.CrossEntropySum(model.call(x), y);
            nats += sum.item<float>();
            count += n.item<long>();
            foreach (var o in chunk)
                for (int j = 1; j <= blockSize; j++) bytes += tok.TokenBytes(s.Tokens[o + j]).Length;
        }
        double loss = nats / count;
        return new Dictionary<string, double>
        {
            ["val_loss"] = loss,
            ["val_perplexity"] = Math.Exp(loss),
            ["val_nats_per_byte"] = nats / Math.Max(1, bytes),
        };
    }

    /// <summary>
    /// Mean negative log-likelihood (nats per token) of <paramref name="text"/>'s tokens after the
    /// first, each predicted from everything before it that fits in the context.
    /// </summary>
    public static (double NatsPerToken, int Tokens) Score(Gpt model, ITokenizer tok, string text)
    {
        var ids = tok.Encode(text);
        if (ids.Length < 2) throw new ChatForgeException("--text must have at least two tokens to score");
        int ctx = model.Config.NPositions;
        double nats = 0; int n = 0;
        using var _ = no_grad();
        model.eval();
        var device = model.TokenEmbedding.device;
        for (int start = 0; start < ids.Length - 1; start += ctx - 1)
        {
            using var scope = NewDisposeScope();
            int len = Math.Min(ctx, ids.Length - start);
            var window = ids.Skip(start).Take(len).Select(i => (long)i).ToArray();
            var all = tensor(window, new long[] { 1, len }, device: device);
            var logits = model.call(all.narrow(1, 0, len - 1));
            var (sum, count) = LogProbs.CrossEntropySum(logits, all.narrow(1, 1, len - 1));
            nats += sum.item<float>();
            n += (int)count.item<long>();
        }
        return (nats / n, ids.Length);
    }

    /// <summary>Held-out windows of <see cref="PretrainLoss"/>, and how many go through the model at once.</summary>
    public const int PretrainLossWindows = 64, PretrainLossBatch = 16;

    /// <summary>Mean next-token loss on a fixed set of held-out pretraining windows.</summary>
    public static double PretrainLoss(Gpt model, TokenStream val, int windows = PretrainLossWindows)
    {
        int t = Math.Min(model.Config.NPositions, val.Tokens.Length - 2);
        var offs = val.EvalOffsets(t, windows);
        double nats = 0, n = 0;
        using var _ = no_grad();
        model.eval();
        var device = model.TokenEmbedding.device;
        for (int i = 0; i < offs.Length; i += PretrainLossBatch)
        {
            using var scope = NewDisposeScope();
            var (x, y) = CausalBatch.Windows(val, offs.Skip(i).Take(PretrainLossBatch).ToArray(), t, device);
            var (s, c) = LogProbs.CrossEntropySum(model.call(x), y);
            nats += s.item<float>(); n += c.item<long>();
        }
        return nats / n;
    }
}
