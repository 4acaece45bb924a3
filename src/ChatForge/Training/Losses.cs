using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Training;

/// <summary>Losses as pure functions of tensors, each tested against numbers worked by hand.</summary>
public static class Losses
{
    /// <summary>Label value that takes no part in a loss (prompt tokens in SFT, padding).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Next-token cross-entropy, mean over the positions whose target is not <see cref="IgnoreIndex"/>.
    /// The shift is decided here, once: logits[:, t] predicts targets[:, t], and callers pass targets
    /// already shifted (targets[:, t] = tokens[:, t+1]).
    /// </summary>
    /// <param name="logits">(B, T, V)</param>
    /// <param name="targets">(B, T) int64</param>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: IgnoreIndex);

    /// <summary>Summed cross-entropy (nats) and the count of scored positions, for exact averages over many batches.</summary>
    public static (Tensor SumNats, Tensor Count) CrossEntropySum(Tensor logits, Tensor targets)
    {
        var sum = F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);
        var count = targets.ne(IgnoreIndex).sum();
        return (sum, count);
    }

    /// <summary>log p(target) of each position (B, T); 0 where the target is ignored.</summary>
    public static Tensor TokenLogProbs(Tensor logits, Tensor targets)
    {
        var mask = targets.ne(IgnoreIndex);
        var safe = targets.masked_fill(mask.logical_not(), 0);
        var lp = F.log_softmax(logits, -1).gather(-1, safe.unsqueeze(-1)).squeeze(-1);
        return lp * mask.to(lp.dtype);
    }
}
