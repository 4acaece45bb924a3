using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Evaluation;

/// <summary>Log-probabilities of targets under a model's logits: what losses and evaluations are built from.</summary>
public static class LogProbs
{
    /// <summary>Summed cross-entropy (nats) and the count of scored positions, for exact averages over many batches.</summary>
    public static (Tensor SumNats, Tensor Count) CrossEntropySum(Tensor logits, Tensor targets)
    {
        var sum = F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: CausalBatch.IgnoreIndex, reduction: nn.Reduction.Sum);
        var count = targets.ne(CausalBatch.IgnoreIndex).sum();
        return (sum, count);
    }

    /// <summary>log p(target) of each position (B, T); 0 where the target is ignored.</summary>
    public static Tensor TokenLogProbs(Tensor logits, Tensor targets)
    {
        var mask = targets.ne(CausalBatch.IgnoreIndex);
        var safe = targets.masked_fill(mask.logical_not(), 0);
        var lp = F.log_softmax(logits, -1).gather(-1, safe.unsqueeze(-1)).squeeze(-1);
        return lp * mask.to(lp.dtype);
    }

    /// <summary>The model's logits (B, T, V) for a batch's inputs, with its positions and attention mask.</summary>
    public static Tensor Logits(CausalLM model, CausalBatch batch) =>
        model.Logits(model.Hidden(batch.Input, batch.Positions, batch.Mask));

    /// <summary>Mean cross-entropy of the trained-on (response) tokens of <paramref name="examples"/>, nats per token.</summary>
    public static double ResponseLoss(CausalLM model, ITokenizer tok, IReadOnlyList<Segment> examples, int batch)
    {
        double nats = 0, n = 0;
        var device = model.TokenEmbedding.device;
        using var _ = no_grad();
        for (int i = 0; i < examples.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            var bt = CausalBatch.Build(examples.Skip(i).Take(batch), tok.EosId(), device);
            var (sum, count) = CrossEntropySum(Logits(model, bt), bt.Targets);
            nats += sum.item<float>();
            n += count.item<long>();
        }
        return n == 0 ? double.NaN : nats / n;
    }

    /// <summary>
    /// log π(targets | context) of each sequence: the sum over its target tokens (a response after its
    /// prompt: <see cref="Segment.From"/>) of log p(token | everything before it). (B)
    /// </summary>
    public static Tensor SequenceLogProbs(CausalLM model, IReadOnlyList<Segment> sequences, int padId)
    {
        var batch = CausalBatch.Build(sequences, padId, model.TokenEmbedding.device);
        return TargetLogProbs(Logits(model, batch), batch).LogProbs.sum(1);
    }

    /// <summary>
    /// The response log-probability function, written once: log p of each scored target in order (B, R),
    /// left-aligned as <see cref="CausalBatch.TargetIndex"/>, 0 past a row's last; and, if asked, the
    /// entropy of the distribution at each of those positions (B, R). Only the R scored positions go
    /// through the softmax.
    /// </summary>
    public static (Tensor LogProbs, Tensor? Entropy) TargetLogProbs(Tensor logits, CausalBatch batch, bool entropy = false)
    {
        var at = logits.gather(1, batch.TargetIndex.unsqueeze(-1).expand(-1, -1, logits.shape[2]));   // (B, R, V)
        var lp = F.log_softmax(at, -1);
        var logp = lp.gather(-1, batch.TargetTokens.unsqueeze(-1)).squeeze(-1) * batch.TargetMask;
        return (logp, entropy ? -(lp.exp() * lp).sum(-1) * batch.TargetMask : null);
    }
}
