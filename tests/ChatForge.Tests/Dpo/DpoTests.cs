using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Dpo;

public class DpoTests
{
    static Tensor V(params float[] v) => tensor(v);

    // Pair 1: π_w = −5, π_l = −7, ref_w = ref_l = −6 → h = (−5+6) − (−7+6) = 2. Pair 2: h = 0.
    // β = 0.5: −log σ(1) = 0.313262, −log σ(0) = 0.693147, −log σ(−1) = 1.313262.

    [Fact]
    public void Dpo_loss_is_minus_log_sigmoid_of_beta_times_the_log_ratio_difference()
    {
        Assert.Equal(0.313262, Losses.Dpo(V(-5), V(-7), V(-6), V(-6), 0.5).item<float>(), 5);
        Assert.Equal((0.313262 + 0.693147) / 2, Losses.Dpo(V(-5, -3), V(-7, -3), V(-6, -3), V(-6, -3), 0.5).item<float>(), 5);
    }

    [Fact]
    public void Label_smoothing_mixes_in_the_flipped_label()
    {
        Assert.Equal(0.9 * 0.313262 + 0.1 * 1.313262, Losses.Dpo(V(-5), V(-7), V(-6), V(-6), 0.5, labelSmoothing: 0.1).item<float>(), 5);
    }

    [Fact]
    public void Ipo_is_the_squared_distance_of_h_from_one_over_two_beta()
    {
        // One token per response: means and sums agree.
        Assert.Equal(1.0, Losses.Ipo(V(-5), V(-7), V(-6), V(-6), V(1), V(1), 0.5).item<float>(), 5); // (2 − 1)²
        Assert.Equal(0.0, Losses.Ipo(V(-5), V(-7), V(-6), V(-6), V(1), V(1), 0.25).item<float>(), 5); // (2 − 2)²
    }

    [Fact]
    public void Ipo_compares_per_token_mean_log_probs_not_sums()
    {
        // Pair 1: chosen 4 tokens, π −8 vs π_ref −12 (sum +4, mean +1); rejected 2 tokens, π −6 vs π_ref −5 (sum −1, mean −0.5).
        //   h on means = 1 − (−0.5) = 1.5, τ = 0.5: (1.5 − 1)² = 0.25 (on sums h = 5: (5 − 1)² = 16).
        // Pair 2: one token each, policy = reference: h = 0, (0 − 1)² = 1 either way. Mean over pairs: 0.625.
        var loss = Losses.Ipo(V(-8, -2), V(-6, -3), V(-12, -2), V(-5, -3), V(4, 1), V(2, 1), tau: 0.5);
        Assert.Equal((0.25 + 1) / 2, loss.item<float>(), 5);
    }

    [Fact]
    public void Implicit_rewards_are_beta_times_the_policy_to_reference_log_ratio()
    {
        var (c, r) = Losses.DpoRewards(V(-5), V(-7), V(-6), V(-6), 0.5);
        Assert.Equal(0.5, c.item<float>(), 5);
        Assert.Equal(-0.5, r.item<float>(), 5);
    }

    [Fact]
    public void The_gradient_raises_the_chosen_log_prob_and_lowers_the_rejected()
    {
        var pc = tensor(new float[] { -5 }, requires_grad: true);
        var pr = tensor(new float[] { -7 }, requires_grad: true);
        Losses.Dpo(pc, pr, V(-6), V(-6), 0.5).backward();
        // dL/dπ_w = −β·σ(−βh) = −0.5·0.268941; dL/dπ_l = +0.5·0.268941.
        Assert.Equal(-0.5 * 0.268941, pc.grad!.item<float>(), 5);
        Assert.Equal(0.5 * 0.268941, pr.grad!.item<float>(), 5);
    }

    [Fact]
    public void Dpo_learns_a_preference_without_a_reward_model()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["b"]);
        var rng = new Random(1);
        var rankings = Enumerable.Range(0, 60).Select(i => new Ranking($"Item {i}:", false, new[] { " good good good", " bad bad bad" }, new[] { 1, 2 })).ToList();
        Preferences.WritePairs(d["pairs.jsonl"], rankings.SelectMany(Preferences.ToPairs));
        var c = DpoConfig.Tiny with
        {
            Model = baseDir, Data = new() { d["pairs.jsonl"] }, Beta = 0.5, Deterministic = true, ValFraction = 0.2,
            Optim = DpoConfig.Tiny.Optim with { MaxSteps = 20, LearningRate = 3e-3, EvalInterval = 10, CheckpointInterval = 10 },
        };
        var s = DpoTrainer.Run(c, d["dpo"], false);
        Assert.True((double)s["rewards/accuracies"]! > 0.9, $"accuracy {s["rewards/accuracies"]}");
        Assert.True((double)s["rewards/margins"]! > 0);
        Assert.True(File.Exists(d["dpo/reference_logps.safetensors"]));
        var rows = MetricsLog.Read(d["dpo/metrics.jsonl"]);
        foreach (var k in new[] { "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies" }) Assert.True(rows[^1].ContainsKey(k), k);
        // Resume from the step-10 checkpoint reproduces the run.
        DpoTrainer.Run(c with { Optim = c.Optim with { MaxSteps = 10, DecaySteps = 20 } }, d["part"], false);
        DpoTrainer.Run(c with { Optim = c.Optim with { DecaySteps = 20 } }, d["part"], true);
        DpoTrainer.Run(c with { Optim = c.Optim with { DecaySteps = 20 } }, d["full"], false);
        Assert.Equal(File.ReadAllBytes(d["full/model/model.safetensors"]), File.ReadAllBytes(d["part/model/model.safetensors"]));
    }
    [Fact]
    public void Reference_log_probs_are_each_pairs_own_computed_once_per_distinct_response()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["b"]);
        // K = 3: every response sits in two pairs, so 3 distinct sequences serve 3 pairs per prompt.
        var rankings = Enumerable.Range(0, 8).Select(i => new Ranking($"Item {i}:", false,
            new[] { " good good", $" so-so {i}", " bad bad bad bad" }, new[] { 1, 2, 3 })).ToList();
        Preferences.WriteRankings(d["r.jsonl"], rankings);
        var c = DpoConfig.Tiny with
        {
            Model = baseDir, Data = new() { d["r.jsonl"] }, Deterministic = true, ValFraction = 0.25,
            Optim = DpoConfig.Tiny.Optim with { MaxSteps = 1, EvalInterval = 1, CheckpointInterval = 1 },
        };
        DpoTrainer.Run(c, d["dpo"], false);
        var cached = SafeTensors.Load(d["dpo/reference_logps.safetensors"]);
        var pairs = rankings.SelectMany(Preferences.ToPairs).ToList();
        Assert.Equal(pairs.Count, (int)cached["chosen"].shape[0]);
        var (model, tok, _) = HfCheckpoint.Load(baseDir);
        model.eval();
        using var _ = no_grad();
        for (int i = 0; i < pairs.Count; i++)
        {
            var p = pairs[i];
            var ch = Preferences.Encode(tok, p.Prompt, p.Chat, p.Chosen, model.Context);
            var rj = Preferences.Encode(tok, p.Prompt, p.Chat, p.Rejected, model.Context);
            float one(int[] ids, int start) => LogProbs.SequenceLogProbs(model, new[] { Segment.From(ids, start) }, tok.EosId()).item<float>();
            Assert.Equal(one(ch.Ids, ch.ResponseStart), cached["chosen"][i].item<float>(), 4);
            Assert.Equal(one(rj.Ids, rj.ResponseStart), cached["rejected"][i].item<float>(), 4);
        }
    }
}
