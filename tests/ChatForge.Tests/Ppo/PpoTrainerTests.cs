using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Ppo;

public class PpoTrainerTests
{
    [Fact]
    public void A_toy_reward_rises_within_a_few_dozen_ppo_iterations()
    {
        // Reward = how many of the response's bytes are lowercase ASCII letters (about 1 in 10 at random).
        using var d = new TempDir();
        var dir = TinyBase.Create(d["b"], seed: 5);
        manual_seed(5);
        var (policy, tok, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var value = new RewardModel(HfCheckpoint.Load(dir).Model);
        var c = PpoConfig.Tiny with
        {
            Model = dir, Reward = dir, RolloutBatch = 16, MiniBatch = 8, PpoEpochs = 2, MaxNewTokens = 8,
            Beta = 0.0, LearningRate = 2e-3, ValueLearningRate = 2e-3, EarlyStopKl = 10, Deterministic = true,
        };
        var prompts = Enumerable.Range(0, 64).Select(i => $"P{i}:").ToList();
        double[] Toy(IReadOnlyList<string> p, IReadOnlyList<string> t, IReadOnlyList<int[]> ids) =>
            ids.Select(r => (double)r.Count(x => x is >= 'a' and <= 'z')).ToArray();
        var ppo = new PpoTrainer(c, policy, reference, null, value, tok, prompts, prompts.Take(4).ToList(), null, null, null, Toy);
        var means = new List<double>();
        for (int it = 0; it < 40; it++)
        {
            using var scope = NewDisposeScope();
            var r = ppo.Collect(prompts.Skip(it * 16 % 64).Take(16).ToList(), it);
            means.Add(r.Scores.mean().item<float>());
            ppo.Update(r, it);
        }
        double early = means.Take(5).Average(), late = means.Skip(35).Average();
        Assert.True(late > early + 1.5, $"reward went from {early:F2} to {late:F2}");
    }

    [Fact]
    public void Ppo_runs_end_to_end_resumes_and_reports_its_metrics()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["b"]);
        var rm = RewardTrainer.Run(RewardConfig.Tiny with { Model = baseDir, Cache = cache, Deterministic = true }, d["rm"], false);
        var c = PpoConfig.Tiny with { Model = baseDir, Reward = d["rm/model"], Cache = cache, Deterministic = true, PtxCoef = 0.5 };
        var full = PpoTrainer.Run(c, d["full"], false);
        foreach (var k in new[] { "oracle_sentiment", "rm_score", "kl_to_sft", "pretrain_val_loss", "sft_oracle_sentiment" })
            Assert.True(full.ContainsKey(k), k);
        var rows = MetricsLog.Read(d["full/metrics.jsonl"]);
        foreach (var k in new[] { "rm_score", "oracle_score", "kl", "entropy", "policy_loss", "value_loss", "clip_fraction", "approx_kl", "response_length", "rollout_tokens_per_second", "train_tokens_per_second", "ptx_loss" })
            Assert.True(rows[^1].ContainsKey(k), k);
        Assert.True(File.Exists(d["full/ppo_reward.png"]) && File.Exists(d["full/ppo_kl.png"]));
        Assert.True(File.Exists(d["full/model/value/model.safetensors"]));

        // Resume: stop after 3 iterations (same schedule), continue to 6: identical policy.
        PpoTrainer.Run(c with { Iterations = 3 }, d["part"], false);
        var resumed = PpoTrainer.Run(c, d["part"], true);
        Assert.Equal(File.ReadAllBytes(d["full/model/model.safetensors"]), File.ReadAllBytes(d["part/model/model.safetensors"]));
        Assert.NotNull(rm);
        Assert.NotNull(resumed);
    }

    [Fact]
    public void Iterated_rlhf_retrains_the_reward_model_each_round()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["b"]);
        RewardTrainer.Run(RewardConfig.Tiny with { Model = baseDir, Cache = cache, Deterministic = true }, d["rm"], false);
        var c = PpoConfig.Tiny with { Model = baseDir, Reward = d["rm/model"], Cache = cache, Iterations = 2, Rounds = 2, Deterministic = true };
        PpoTrainer.Run(c, d["run"], false);
        Assert.True(File.Exists(d["run/round1/reward/model/model.safetensors"]));
        Assert.True(File.Exists(d["run/round1/reward/rankings.jsonl"]));
        Assert.Equal(2, MetricsLog.Read(d["run/metrics.jsonl"]).Max(r => r.GetValueOrDefault("round")));
    }

    [Fact]
    public void A_response_budget_as_long_as_the_context_is_refused_naming_the_key()
    {
        // Rollouts are scored in one window of query + response, so the response must leave room for the query.
        using var d = new TempDir();
        var dir = TinyBase.Create(d["b"]);
        var (policy, tok, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var value = new RewardModel(HfCheckpoint.Load(dir).Model);
        var c = PpoConfig.Tiny with { Model = dir, Reward = dir, MaxNewTokens = TinyBase.Config.NPositions };
        var e = Assert.Throws<ChatForgeException>(() => new PpoTrainer(c, policy, reference, null, value, tok, new() { "a", "b" }, new() { "c" }, null, null, null));
        Assert.Contains("'max_new_tokens' = 128", e.Message, StringComparison.Ordinal);
    }
}
