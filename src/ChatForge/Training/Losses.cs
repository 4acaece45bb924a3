using ChatForge.Data;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Training;

/// <summary>Losses as pure functions of tensors, each tested against numbers worked by hand.</summary>
public static class Losses
{
    /// <summary>
    /// Next-token cross-entropy, mean over the positions whose target is not <see cref="CausalBatch.IgnoreIndex"/>.
    /// The shift is decided here, once: logits[:, t] predicts targets[:, t], and callers pass targets
    /// already shifted (targets[:, t] = tokens[:, t+1]).
    /// </summary>
    /// <param name="logits">(B, T, V)</param>
    /// <param name="targets">(B, T) int64</param>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: CausalBatch.IgnoreIndex);

    /// <summary>
    /// InstructGPT's reward-model loss for K-wise rankings: for each prompt,
    /// −(1/#pairs) Σ_{rank_i better than rank_j} log σ(r_i − r_j − margin), then the mean over prompts.
    /// Every response is scored once; all pairs come from those K scores. #pairs is C(K,2) without
    /// ties; tied pairs are skipped, and a prompt whose responses all tie has no pairs and does not
    /// count in the mean. Unused slots (prompts with fewer responses) have rank 0.
    /// </summary>
    /// <param name="scores">(P, K) rewards</param>
    /// <param name="ranks">(P, K) int64 ranks, 1 = best, 0 = no response in this slot</param>
    public static Tensor RankingLoss(Tensor scores, Tensor ranks, double margin = 0.0)
    {
        var (sum, prompts) = RankingLossSum(scores, ranks, margin);
        return sum / prompts.clamp_min(1);
    }

    /// <summary>
    /// The parts of <see cref="RankingLoss"/>: the sum over prompts of each prompt's mean pair loss, and the
    /// number of prompts with at least one pair (for exact means over micro-batches).
    /// </summary>
    public static (Tensor Sum, Tensor Prompts) RankingLossSum(Tensor scores, Tensor ranks, double margin = 0.0)
    {
        var ri = ranks.unsqueeze(2); var rj = ranks.unsqueeze(1);                 // (P, K, 1), (P, 1, K)
        var better = ri.lt(rj) & ri.gt(0) & rj.gt(0);                             // pair (i, j): i strictly better
        var diff = scores.unsqueeze(2) - scores.unsqueeze(1) - margin;           // r_i − r_j − m
        var pairLoss = -F.logsigmoid(diff) * better.to(scores.dtype);
        var pairsPerPrompt = better.sum(new long[] { 1, 2 }).to(scores.dtype);   // (P)
        var perPrompt = pairLoss.sum(new long[] { 1, 2 }) / pairsPerPrompt.clamp_min(1);
        return (perPrompt.sum(), pairsPerPrompt.gt(0).sum().to(scores.dtype));
    }

    /// <summary>Fraction of ranked pairs (ties skipped) whose scores are in the ranking's order.</summary>
    public static (double Correct, double Pairs) PairwiseAccuracy(Tensor scores, Tensor ranks)
    {
        var ri = ranks.unsqueeze(2); var rj = ranks.unsqueeze(1);
        var better = ri.lt(rj) & ri.gt(0) & rj.gt(0);
        var right = (scores.unsqueeze(2) > scores.unsqueeze(1)) & better;
        return (right.sum().item<long>(), better.sum().item<long>());
    }

    // ---- PPO (Schulman et al. 2017; the per-token RLHF form of Ziegler et al. 2019 / InstructGPT) ----

    /// <summary>
    /// Per-token rewards: −β·(log π − log π_ref) at every response token, plus the reward-model score
    /// at each sequence's last response token. Padding positions (mask 0) get 0.
    /// </summary>
    /// <param name="logp">(B, T) log π of the sampled tokens</param>
    /// <param name="refLogp">(B, T) log π_ref of the same tokens</param>
    /// <param name="score">(B) reward-model scores</param>
    /// <param name="mask">(B, T) 1 on response tokens</param>
    public static Tensor KlPenalizedRewards(Tensor logp, Tensor refLogp, Tensor score, Tensor mask, double beta)
    {
        var rewards = -beta * (logp - refLogp) * mask;
        var lastIdx = (mask.sum(1).to(ScalarType.Int64) - 1).clamp_min(0).unsqueeze(1);       // (B, 1)
        var bonus = zeros_like(rewards).scatter(1, lastIdx, score.unsqueeze(1).to(rewards.dtype));
        return rewards + bonus * mask;
    }

    /// <summary>
    /// Generalised advantage estimation: δ_t = r_t + γ·V_{t+1} − V_t (V after the last token is 0),
    /// A_t = Σ_k (γλ)^k δ_{t+k}; returns R_t = A_t + V_t. Response tokens are left-aligned; mask 0 after the end.
    /// </summary>
    public static (Tensor Advantages, Tensor Returns) Gae(Tensor rewards, Tensor values, Tensor mask, double gamma, double lambda)
    {
        long t = rewards.shape[1];
        var adv = new Tensor[t];
        var last = zeros_like(rewards.select(1, 0));
        for (long i = t - 1; i >= 0; i--)
        {
            var m = mask.select(1, i);
            var nextV = i + 1 < t ? values.select(1, i + 1) * mask.select(1, i + 1) : zeros_like(last);
            var delta = rewards.select(1, i) + gamma * nextV - values.select(1, i);
            last = (delta + gamma * lambda * last) * m;
            adv[i] = last;
        }
        var a = stack(adv, 1);
        return (a, (a + values) * mask);
    }

    /// <summary>(x − mean) / std over the masked entries (advantage whitening); masked-out entries become 0.</summary>
    public static Tensor Whiten(Tensor x, Tensor mask)
    {
        var n = mask.sum().clamp_min(1);
        var mean = (x * mask).sum() / n;
        var variance = ((x - mean).pow(2) * mask).sum() / n;
        return (x - mean) * rsqrt(variance + 1e-8) * mask;
    }

    /// <summary>Masked mean.</summary>
    public static Tensor MaskedMean(Tensor x, Tensor mask) => (x * mask).sum() / mask.sum().clamp_min(1);

    /// <summary>Clipped surrogate: mean over tokens of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(log π − log π_old); and the clip fraction.</summary>
    public static (Tensor Loss, Tensor ClipFraction) PpoPolicyLoss(Tensor logp, Tensor oldLogp, Tensor advantages, Tensor mask, double clip)
    {
        var ratio = (logp - oldLogp).exp();
        var l1 = -advantages * ratio;
        var l2 = -advantages * ratio.clamp(1 - clip, 1 + clip);
        var loss = MaskedMean(maximum(l1, l2), mask);
        var clipped = MaskedMean((l2 > l1).to(logp.dtype), mask);
        return (loss, clipped);
    }

    /// <summary>Clipped value loss: ½·mean max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²).</summary>
    public static Tensor PpoValueLoss(Tensor values, Tensor oldValues, Tensor returns, Tensor mask, double clip)
    {
        var clipped = oldValues + (values - oldValues).clamp(-clip, clip);
        return 0.5 * MaskedMean(maximum((values - returns).pow(2), (clipped - returns).pow(2)), mask);
    }

    /// <summary>Per-token entropy of the policy's distribution (B, T).</summary>
    public static Tensor Entropy(Tensor logits)
    {
        var lp = F.log_softmax(logits, -1);
        return -(lp.exp() * lp).sum(-1);
    }

    // ---- DPO (Rafailov et al. 2023) ----

    /// <summary>
    /// Direct Preference Optimization. With h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x)):
    /// −(1−ε)·log σ(β·h) − ε·log σ(−β·h) (ε = label smoothing, conservative DPO; ε = 0 is the paper's loss).
    /// Inputs are per-pair sequence log-probabilities (sums over response tokens); the result is the mean over pairs.
    /// </summary>
    public static Tensor Dpo(Tensor policyChosen, Tensor policyRejected, Tensor refChosen, Tensor refRejected, double beta,
                             double labelSmoothing = 0.0)
    {
        var h = (policyChosen - refChosen) - (policyRejected - refRejected);
        return (-(1 - labelSmoothing) * F.logsigmoid(beta * h) - labelSmoothing * F.logsigmoid(-beta * h)).mean();
    }

    /// <summary>
    /// IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    /// eq. 17): (h − 1/(2τ))², the mean over pairs, with h DPO's difference of log-ratios taken over per-token
    /// MEAN log-probabilities: each sequence log-probability (a sum over response tokens) is divided by its
    /// number of response tokens, for policy and reference alike. The paper writes h with sequence
    /// log-likelihoods; TRL's DPOTrainer averages them for loss_type="ipo", and so do we: a difference of sums
    /// grows with the responses' length while the target 1/(2τ) does not, so with sums the strength of the
    /// regularisation would depend on how long the responses are.
    /// </summary>
    /// <param name="chosenTokens">(B) response-token counts of the chosen responses (float)</param>
    /// <param name="rejectedTokens">(B) response-token counts of the rejected responses (float)</param>
    public static Tensor Ipo(Tensor policyChosen, Tensor policyRejected, Tensor refChosen, Tensor refRejected,
                             Tensor chosenTokens, Tensor rejectedTokens, double tau)
    {
        var h = (policyChosen - refChosen) / chosenTokens - (policyRejected - refRejected) / rejectedTokens;
        return (h - 1.0 / (2 * tau)).pow(2).mean();
    }

    /// <summary>DPO's implicit rewards β·(log π − log π_ref) of chosen and rejected responses.</summary>
    public static (Tensor Chosen, Tensor Rejected) DpoRewards(Tensor policyChosen, Tensor policyRejected, Tensor refChosen, Tensor refRejected, double beta) =>
        (beta * (policyChosen - refChosen), beta * (policyRejected - refRejected));
}
