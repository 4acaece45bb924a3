using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Evaluation;

/// <summary>Held-out language-model loss: nats per token, perplexity, and nats per byte (comparable across tokenizers).</summary>
public static class Perplexity
{
    /// <summary>
    /// Cross-entropy over fixed windows of a token stream: the training objective on held-out windows, as
    /// nanoGPT's estimate_loss, so the j-th token of a window sees j tokens of context (1 … block size) and
    /// val_loss compares with the training loss. (<see cref="Score"/> instead gives every token as much
    /// context as the model holds.)
    /// </summary>
    public static Dictionary<string, double> OnWindows(CausalLM model, ITokenizer tok, TokenStream s, long[] offsets, int blockSize, int batch)
    {
        if (offsets.Length == 0) throw new ArgumentException("no windows to evaluate", nameof(offsets));
        double nats = 0, count = 0, bytes = 0;
        var device = model.TokenEmbedding.device;
        using var _ = no_grad();
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
    /// Mean negative log-likelihood (nats per token) of <paramref name="text"/>'s tokens after the first.
    /// A text longer than the context is scored with a sliding window (Hugging Face's "perplexity of
    /// fixed-length models"): each token is scored once, from at least min(t, ctx + 1 − stride) of the
    /// tokens before it; stride 1 gives every token the last min(t, ctx) tokens (exact, one forward pass
    /// per token), the default, half the context, costs about two passes over the text.
    /// </summary>
    public static (double NatsPerToken, int Tokens) Score(CausalLM model, ITokenizer tok, string text, int? stride = null)
    {
        var ids = tok.Encode(text);
        if (ids.Length < 2) throw new ChatForgeException("--text must have at least two tokens to score");
        var logps = SlidingLogProbs(model, ids, 1, stride ?? Math.Max(1, model.Context / 2));
        return (-logps.Average(), ids.Length);
    }

    /// <summary>
    /// log p(ids[t] | the tokens before it) for every t ≥ <paramref name="from"/>, through windows of the
    /// context length: the first begins max(0, from − ctx) (so token <paramref name="from"/> sees min(from, ctx)
    /// tokens), each next one <paramref name="stride"/> later, and each scores only the tokens no earlier window
    /// reached. So token t sees between min(t, ctx + 1 − stride) and ctx tokens; with stride 1, exactly the last
    /// min(t, ctx): what a generator that crops to the context (nanoGPT's, <see cref="Generation.TextGenerator"/>) saw.
    /// </summary>
    public static double[] SlidingLogProbs(CausalLM model, int[] ids, int from, int stride)
    {
        int ctx = model.Context;
        if (from < 1 || from > ids.Length) throw new ArgumentOutOfRangeException(nameof(from), from, "the first scored token needs one token before it");
        if (stride < 1 || stride > ctx) throw new ChatForgeException($"stride must be between 1 and the context ({ctx}), got {stride}");
        // (begin, first, end): the model reads ids[begin .. end−1) and the targets first … end−1 are scored.
        var windows = new List<(int Begin, int First, int End)>();
        for (int begin = Math.Max(0, from - ctx), next = from; next < ids.Length; begin += stride)
        {
            int end = Math.Min(begin + ctx + 1, ids.Length);   // > next: the ends advance by stride ≥ 1
            windows.Add((begin, next, end));
            next = end;
        }

        var result = new double[ids.Length - from];
        var device = model.TokenEmbedding.device;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            // Full windows have the same length: a batch of them per forward pass, up to 16 or 2^26 logits.
            int perPass = (int)Math.Clamp((1L << 26) / ((long)ctx * model.VocabSize), 1, 16);
            foreach (var group in windows.GroupBy(w => w.End - w.Begin).SelectMany(g => g.Chunk(perPass)))
            {
                using var scope = NewDisposeScope();
                int len = group[0].End - group[0].Begin;                 // inputs + 1
                var buf = group.SelectMany(w => ids[w.Begin..w.End]).Select(i => (long)i).ToArray();
                var (x, y) = CausalBatch.Shift(tensor(buf, new long[] { group.Length, len }, device: device));
                var lp = LogProbs.TokenLogProbs(model.call(x), y).cpu().data<float>().ToArray(); // (G, T)
                for (int g = 0; g < group.Length; g++)
                {
                    var (begin, first, end) = group[g];
                    for (int t = first; t < end; t++) result[t - from] = lp[g * (len - 1) + (t - begin - 1)];
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return result;
    }

    /// <summary>Held-out windows of <see cref="PretrainLoss"/>, and how many go through the model at once.</summary>
    public const int PretrainLossWindows = 64, PretrainLossBatch = 16;
    /// <summary>Window length of <see cref="PretrainLoss"/> at most: the model's context, capped for long-context checkpoints.</summary>
    public const int PretrainLossMaxWindow = 1024;

    /// <summary>Mean next-token loss on a fixed set of held-out pretraining windows.</summary>
    public static double PretrainLoss(CausalLM model, TokenStream val, int windows = PretrainLossWindows)
    {
        int t = Math.Min(Math.Min(model.Context, PretrainLossMaxWindow), val.Tokens.Length - 2);
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
