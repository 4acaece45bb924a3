using ChatForge.Tokenization;
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
        var prompts = Enumerable.Range(0, 64).Select(i => (ChatPrompt)$"P{i}:").ToList();
        double[] Toy(IReadOnlyList<ChatPrompt> p, IReadOnlyList<string> t, IReadOnlyList<int[]> ids) =>
            ids.Select(r => (double)r.Count(x => x is >= 'a' and <= 'z')).ToArray();
        var ppo = new PpoTrainer(c, policy, reference, null, value, tok, prompts, prompts.Take(4).ToList(), null, null, null, Toy);
        var means = new List<double>();
        for (int it = 0; it < 40; it++)
        {
            using var scope = NewDisposeScope();
            var r = ppo.SampleRollout(prompts.Skip(it * 16 % 64).Take(16).ToList(), it);
            means.Add(r.Scores.mean().item<float>());
            ppo.Update(r, it);
        }
        double early = means.Take(5).Average(), late = means.Skip(35).Average();
        Assert.True(late > early + 1.5, $"reward went from {early:F2} to {late:F2}");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]   // untied: the value and reward models' files have no lm_head
    public void Ppo_runs_end_to_end_resumes_and_reports_its_metrics(string family)
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["b"], family: family);
        RewardTrainer.Run(RewardConfig.Tiny with { Model = baseDir, Cache = cache, Deterministic = true }, d["rm"], false);
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
        Assert.Equal(full["oracle_sentiment"], resumed["oracle_sentiment"]);
        Assert.Equal(full["kl_to_sft"], resumed["kl_to_sft"]);
        Assert.Equal(6L, resumed["iterations"]);
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
        // Round 2's reward model trained on all rankings so far: the initial reward model's and the fresh ones.
        int initial = Preferences.ReadRankings(d["rm/rankings.jsonl"]).Count, fresh = Preferences.ReadRankings(d["run/round1/reward/rankings.jsonl"]).Count;
        var s = RunDirectory.ReadSummary(d["run/round1/reward/summary.json"]);
        Assert.Equal(initial + fresh, s["train_rankings"].GetInt32() + s["val_rankings"].GetInt32());
        Assert.True(initial > 0 && fresh > 0);
    }

    [Fact]
    public void Ppo_on_the_alignment_mixture_rolls_out_chat_prompts_retrains_on_hhh_rankings_and_reports_each_kind()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["b"]);
        var hhh = new ChatForge.Labeling.CollectConfig { Task = "hhh", Prompts = 24, K = 3, MaxNewTokens = 6 };
        RewardTrainer.Run(RewardConfig.Tiny with { Model = baseDir, Cache = cache, Deterministic = true, Collect = hhh }, d["rm"], false);
        var c = PpoConfig.Tiny with
        {
            Model = baseDir, Reward = d["rm/model"], Cache = cache, Iterations = 2, Rounds = 2, Deterministic = true, Task = "hhh",
            RoundCollect = hhh, EvalPrompts = 8,
        };
        var summary = PpoTrainer.Run(c, d["run"], false);
        Assert.Equal("hhh", summary["task"]);
        foreach (var k in new[] { "oracle_alignment", "sft_oracle_alignment", "oracle_gain" }) Assert.True(summary[k] is double v && double.IsFinite(v), k);
        Assert.False(summary.ContainsKey("oracle_sentiment"));
        var kinds = (Dictionary<string, double?>)summary["oracle_by_kind"]!;
        Assert.Equal(new[] { "benign", "harmful", "knowable", "unknowable" }, kinds.Keys.Order());
        Assert.All(kinds.Values, v => Assert.InRange(v!.Value, 0, 1));
        // Chat rollouts (config.json says so) and round 2's reward model trained on hhh rankings with their families.
        Assert.True(System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["run/config.json"])).RootElement.GetProperty("chat").GetBoolean());
        var round2 = Preferences.ReadRankings(d["run/round1/reward/rankings.jsonl"]);
        Assert.All(round2, r => Assert.Contains(r.Family, new[] { "helpful", "honest", "harmless" }));
        Assert.Contains(MetricsLog.Read(d["run/metrics.jsonl"]), r => r.ContainsKey("eval_oracle_harmful"));
        // Each round is evaluated at its end and its policy kept (the last round's is model/).
        var byRound = (List<Dictionary<string, object?>>)summary["by_round"]!;
        Assert.Equal(new[] { 1, 2 }, byRound.Select(r => (int)r["round"]!));
        Assert.All(byRound, r => Assert.Equal(4, ((Dictionary<string, double?>)r["oracle_by_kind"]!).Count));
        Assert.Equal(summary["oracle_alignment"], byRound[1]["oracle_alignment"]);
        Assert.True(File.Exists(d["run/policy_round1/model.safetensors"]));
        Assert.False(Directory.Exists(d["run/policy_round2"]));
    }

    [Theory]
    [InlineData("""{"task": "chess"}""", "'task' = chess is out of range (sentiment or hhh)")]
    [InlineData("""{"task": "hhh", "prompts": ["p.jsonl"]}""", "'task' hhh brings its own prompts")]
    [InlineData("""{"task": "hhh", "rounds": 2}""", "'round_collect.task' = sentiment: later rounds of task hhh must rank hhh responses")]
    public void A_bad_alignment_setting_is_rejected_naming_the_key(string json, string message)
    {
        var c = ChatForge.Training.ConfigMerge.Overlay(PpoConfig.Tiny with { Model = "m", Reward = "r" }, json, "ppo.json");
        var e = Assert.Throws<ChatForgeException>(() => c.Validate("ppo.json"));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void A_run_killed_during_a_round_change_resumes_and_ends_with_the_weights_of_an_uninterrupted_run()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["b"]);
        RewardTrainer.Run(RewardConfig.Tiny with { Model = baseDir, Cache = cache, Deterministic = true }, d["rm"], false);
        // Checkpoints only at the round change and at the end: a kill in round 2 resumes from the round change.
        var c = PpoConfig.Tiny with { Model = baseDir, Reward = d["rm/model"], Cache = cache, Iterations = 2, Rounds = 2, CheckpointInterval = 0, Deterministic = true };
        PpoTrainer.Run(c, d["full"], false);

        // Killed while round 2's reward model is being retrained (its rankings collected, its training not finished).
        using (var kill = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => PpoTrainer.Run(c, d["part"], false,
                log: line => { if (line.StartsWith("round 2:", StringComparison.Ordinal)) kill.Cancel(); }, cancel: kill.Token));
            Assert.False(File.Exists(d["part/round1/reward/model/model.safetensors"]));
        }
        // Killed again after round 2's first iteration: the retrained reward model exists, no later checkpoint does.
        using (var kill = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => PpoTrainer.Run(c, d["part"], true,
                progress: p => { if (p.Step == 3) kill.Cancel(); }, cancel: kill.Token));
            Assert.True(File.Exists(d["part/round1/reward/model/model.safetensors"]));
        }
        PpoTrainer.Run(c, d["part"], true);

        Assert.Equal(File.ReadAllBytes(d["full/round1/reward/model/model.safetensors"]), File.ReadAllBytes(d["part/round1/reward/model/model.safetensors"]));
        Assert.Equal(File.ReadAllBytes(d["full/model/model.safetensors"]), File.ReadAllBytes(d["part/model/model.safetensors"]));
        Assert.Equal(File.ReadAllBytes(d["full/model/value/model.safetensors"]), File.ReadAllBytes(d["part/model/value/model.safetensors"]));
        Assert.Equal(4, MetricsLog.Read(d["part/metrics.jsonl"]).Max(r => r["step"]));
    }

    static double[] LowercaseReward(IReadOnlyList<ChatPrompt> p, IReadOnlyList<string> t, IReadOnlyList<int[]> ids) =>
        ids.Select(r => (double)r.Count(x => x is >= 'a' and <= 'z')).ToArray();

    [Fact]
    public void With_dropout_in_the_model_the_first_minibatch_has_ratio_one_and_the_rollout_values()
    {
        // GPT-2's own dropout (0.1): PPO's forward passes must match the rollout's, so before any update ρ = 1 exactly.
        using var d = new TempDir();
        manual_seed(3);
        using (var gpt = new Gpt(TinyBase.Config with { ResidPdrop = 0.1, EmbdPdrop = 0.1, AttnPdrop = 0.1 }))
            HfCheckpoint.Write(d["b"], gpt, new ChatForge.Tokenization.ByteTokenizer());
        var (policy, tok, _) = HfCheckpoint.Load(d["b"]);
        var (reference, _, _) = HfCheckpoint.Load(d["b"]);
        var value = new RewardModel(HfCheckpoint.Load(d["b"]).Model);
        using (no_grad()) value.ScoreWeight.normal_();
        var c = PpoConfig.Tiny with { Model = d["b"], Reward = d["b"], RolloutBatch = 8, MiniBatch = 8, PpoEpochs = 1, MaxNewTokens = 8, Deterministic = true };
        var prompts = Enumerable.Range(0, 8).Select(i => (ChatPrompt)$"P{i}:").ToList();
        var ppo = new PpoTrainer(c, policy, reference, null, value, tok, prompts, prompts, null, null, null, LowercaseReward);

        var r = ppo.SampleRollout(prompts, 1);
        var expectedValueLoss = Losses.PpoValueLoss(r.Values, r.Values, r.Returns, r.Mask, c.ClipRangeValue).item<float>();
        var m = ppo.Update(r, 0);
        Assert.Equal(1, m["ppo_updates"]);
        Assert.True(m["approx_kl"] < 1e-9, $"approx KL to the rollout policy before any update: {m["approx_kl"]}");
        Assert.Equal(0, m["clip_fraction"]);
        Assert.Equal(expectedValueLoss, m["value_loss"], 1e-5 * Math.Max(1, expectedValueLoss));
    }

    [Fact]
    public void The_value_model_starts_out_predicting_the_normalised_score_that_the_rewards_use()
    {
        // A reward model whose raw scores are normalised by mean 0.7 and sd 2.5 (as a trained one stores them).
        using var d = new TempDir();
        var dir = TinyBase.Create(d["b"], seed: 4);
        manual_seed(4);
        var (gpt, tok, _) = HfCheckpoint.Load(dir);
        using (var rm0 = new RewardModel(gpt))
        {
            using (no_grad()) rm0.ScoreWeight.normal_(0, 0.3);
            rm0.Mean = 0.7; rm0.Std = 2.5;
            rm0.Save(d["rm"], tok);
        }
        var c = PpoConfig.Tiny with { Model = dir, Reward = d["rm"], RolloutBatch = 8, MaxNewTokens = 8, ValueInit = "reward" };
        var (policy, _, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var (rm, _) = RewardCheckpoint.Load(d["rm"]);
        var value = PpoTrainer.InitialValueModel(c);
        var prompts = Enumerable.Range(0, 8).Select(i => (ChatPrompt)$"Q{i} ").ToList();
        var ppo = new PpoTrainer(c, policy, reference, rm, value, tok, prompts, prompts, null, null, null);

        var r = ppo.SampleRollout(prompts, 2);
        var scores = r.Scores.data<float>().ToArray();
        Assert.All(scores, s => Assert.True(Math.Abs(s) < c.ScoreClip, $"score {s} is clipped"));
        Assert.True(scores.Max() - scores.Min() > 0.05, "the rollout's scores should differ");
        using var _ = no_grad();
        for (int i = 0; i < prompts.Count; i++)
        {
            // The sequence the reward model scored, and the value model's prediction at its last token.
            var ids = Preferences.Encode(tok, prompts[i], false, r.Texts[i], policy.Context).Ids;
            var v = PpoTrainer.Values(value, tensor(ids.Select(x => (long)x).ToArray()).unsqueeze(0))[0, ids.Length - 1].item<float>();
            Assert.Equal(scores[i], v, 1e-4);
        }
    }

    [Fact]
    public void A_conversation_is_the_state_the_policy_samples_from_and_the_reward_model_scores()
    {
        using var d = new TempDir();
        var dir = TinyBase.Create(d["b"], seed: 5);
        manual_seed(5);
        var (gpt, tok, _) = HfCheckpoint.Load(dir);
        using (var rm0 = new RewardModel(gpt))
        {
            using (no_grad()) rm0.ScoreWeight.normal_(0, 0.3);
            rm0.Save(d["rm"], tok);
        }
        var c = PpoConfig.Tiny with { Model = dir, Reward = d["rm"], RolloutBatch = 4, MaxNewTokens = 6, ValueInit = "reward", Chat = true };
        var (policy, _, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var (rm, _) = RewardCheckpoint.Load(d["rm"]);
        var value = PpoTrainer.InitialValueModel(c);
        // The same last message after two different first turns.
        ChatPrompt After(string first) => new("How do I do that?", new[] { new ChatMessage("user", first), new ChatMessage("assistant", "OK.") });
        var prompts = new List<ChatPrompt> { After("I want to steal a car."), After("I want to kill a stuck process."), "How do I do that?", After("I want to fire up the grill.") };
        var ppo = new PpoTrainer(c, policy, reference, rm, value, tok, prompts, prompts, null, null, null);

        var r = ppo.SampleRollout(prompts, 3);
        using var _ = no_grad();
        var scores = r.Scores.data<float>().ToArray();
        for (int i = 0; i < prompts.Count; i++)
        {
            // The policy was asked the whole conversation under the chat template…
            Assert.Equal(ChatTemplate.Encode(tok, prompts[i].Messages, addGenerationPrompt: true).Ids, r.Queries[i]);
            // …and the reward model (through the value model it initialises) scored the whole conversation and the response.
            var ids = Preferences.Encode(tok, prompts[i], true, r.Texts[i], policy.Context).Ids;
            var v = PpoTrainer.Values(value, tensor(ids.Select(x => (long)x).ToArray()).unsqueeze(0))[0, ids.Length - 1].item<float>();
            Assert.Equal(scores[i], v, 1e-4);
        }
        Assert.NotEqual(r.Queries[0], r.Queries[1]);
    }

    /// <summary>A trainer on a fresh tiny byte-level model with a reward function and, optionally, pretraining text.</summary>
    static PpoTrainer ToyTrainer(TempDir d, PpoConfig c, Func<IReadOnlyList<ChatPrompt>, IReadOnlyList<string>, IReadOnlyList<int[]>, double[]> reward,
                                 TokenStream? ptxTrain = null, TokenStream? ptxVal = null)
    {
        var dir = File.Exists(d["b/config.json"]) ? d["b"] : TinyBase.Create(d["b"], seed: 11);
        var (policy, tok, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var value = new RewardModel(HfCheckpoint.Load(dir).Model);
        var prompts = Enumerable.Range(0, 32).Select(i => (ChatPrompt)$"P{i}:").ToList();
        return new PpoTrainer(c with { Model = dir, Reward = dir }, policy, reference, null, value, tok, prompts, prompts.Take(8).ToList(), ptxTrain, ptxVal, null, reward);
    }

    static readonly List<ChatPrompt> ToyPrompts = Enumerable.Range(0, 32).Select(i => (ChatPrompt)$"P{i}:").ToList();

    [Fact]
    public void The_kl_penalty_keeps_the_policy_closer_to_the_reference_than_no_penalty()
    {
        // Same seed, same reward (lowercase letters), a learning rate high enough to drift; only β differs.
        double KlAfterTraining(double beta)
        {
            using var d = new TempDir();
            var c = PpoConfig.Tiny with { RolloutBatch = 16, MiniBatch = 8, Beta = beta, LearningRate = 1e-2, ValueLearningRate = 3e-3, EarlyStopKl = 10, Deterministic = true };
            var ppo = ToyTrainer(d, c, LowercaseReward);
            var kls = new List<double>();
            for (int it = 0; it < 10; it++)
            {
                using var scope = NewDisposeScope();
                kls.Add(ppo.Step(ToyPrompts.Skip(it * 16 % 32).Take(16).ToList(), it)["kl"]);
            }
            return kls.Skip(7).Average(); // the last three rollouts' KL to the reference, nats per response
        }
        double free = KlAfterTraining(0), penalised = KlAfterTraining(1.0);
        Assert.True(penalised < free * 0.5, $"KL with β = 1: {penalised:F3} nats, with β = 0: {free:F3}");
    }

    [Fact]
    public void Ppo_ptx_lowers_the_pretraining_loss_against_plain_ppo()
    {
        using var corpus = new TempDir();
        var tok = new ChatForge.Tokenization.ByteTokenizer();
        var docs = TextCorpus.Load(new[] { TestCorpus.WriteText(corpus["c.txt"], 120) });
        var (trainDocs, valDocs) = TextCorpus.Split(docs, 0.2, 1);
        var train = TokenStream.Encode(trainDocs, tok);
        var val = TokenStream.Encode(valDocs, tok);
        double PretrainLossAfter(double gamma)
        {
            using var d = new TempDir();
            var c = PpoConfig.Tiny with { RolloutBatch = 8, MiniBatch = 4, PtxCoef = gamma, PtxBatch = 4, LearningRate = 3e-3, EarlyStopKl = 10, Deterministic = true };
            var ppo = ToyTrainer(d, c, LowercaseReward, train, val);
            for (int it = 0; it < 4; it++)
            {
                using var scope = NewDisposeScope();
                ppo.Step(ToyPrompts.Skip(it * 8).Take(8).ToList(), it);
            }
            return ppo.Evaluate(1)["eval_pretrain_loss"];
        }
        double plain = PretrainLossAfter(0), ptx = PretrainLossAfter(1);
        Assert.True(ptx < plain - 0.2, $"held-out pretraining loss with γ = 1: {ptx:F3}, with γ = 0: {plain:F3}");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Training_changes_every_policy_and_value_parameter(string family)
    {
        using var d = new TempDir();
        var c = PpoConfig.Tiny with { RolloutBatch = 8, MiniBatch = 4, EarlyStopKl = 10, Deterministic = true };
        var dir = TinyBase.Create(d["b"], seed: 11, family: family);
        var (policy, tok, _) = HfCheckpoint.Load(dir);
        var (reference, _, _) = HfCheckpoint.Load(dir);
        var value = PpoTrainer.InitialValueModel(c with { Model = dir, ValueInit = "policy" }); // zero head: the hardest case
        var before = policy.named_parameters().Concat(value.TrainableParameters().Select(p => ("value." + p.Name, p.Param)))
            .Select(p => (p.Item1, p.Item2.detach().clone())).ToList();
        var ppo = new PpoTrainer(c with { Model = dir, Reward = dir }, policy, reference, null, value, tok, ToyPrompts, ToyPrompts, null, null, null, LowercaseReward);
        for (int it = 0; it < 2; it++)
        {
            using var scope = NewDisposeScope();
            ppo.Step(ToyPrompts.Skip(it * 8).Take(8).ToList(), it);
        }
        var after = policy.named_parameters().Concat(value.TrainableParameters().Select(p => ("value." + p.Name, p.Param))).ToDictionary(p => p.Item1, p => p.Item2);
        Assert.Equal(before.Count, after.Count);
        foreach (var (name, old) in before)
            Assert.True((old - after[name]).abs().max().item<float>() > 0, $"{name} did not change");
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
