using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Dpo;

public class DpoTrainerTests
{
    static List<Ranking> Rankings(int prompts, string tag = "") => Enumerable.Range(0, prompts).Select(i => new Ranking($"Item {i}:", false,
        new[] { " good good" + tag, $" so-so {i}", " bad bad bad" }, new[] { 1, 2, 3 })).ToList();

    static DpoConfig Config(string model, string data, int steps) => DpoConfig.Tiny with
    {
        Model = model, Data = new() { data }, Deterministic = true, ValFraction = 0.25, EvalPrompts = 0,
        Optim = DpoConfig.Tiny.Optim with { MaxSteps = steps, LogInterval = 1, EvalInterval = 0, CheckpointInterval = 0 },
    };

    /// <summary>Asserts that the run's cached reference log-probabilities are <paramref name="model"/>'s on <paramref name="rankings"/>.</summary>
    static void AssertCacheIsFresh(string runDir, string model, IEnumerable<Ranking> rankings)
    {
        var cached = SafeTensors.Load(Path.Combine(runDir, "reference_logps.safetensors"));
        var pairs = rankings.SelectMany(Preferences.ToPairs).ToList();
        Assert.Equal(pairs.Count, (int)cached["chosen"].shape[0]);
        var (gpt, tok, _) = HfCheckpoint.Load(model);
        using var _ = no_grad();
        float One(string response, PreferencePair p)
        {
            var (ids, start) = Preferences.Encode(tok, p.Prompt, p.Chat, response, gpt.Context);
            return LogProbs.SequenceLogProbs(gpt, new[] { Segment.From(ids, start) }, tok.EosId()).item<float>();
        }
        for (int i = 0; i < pairs.Count; i++)
        {
            Assert.Equal(One(pairs[i].Chosen, pairs[i]), cached["chosen"][i].item<float>(), tolerance: 1e-3);
            Assert.Equal(One(pairs[i].Rejected, pairs[i]), cached["rejected"][i].item<float>(), tolerance: 1e-3);
        }
    }

    [Fact]
    public void Cached_reference_log_probs_are_recomputed_for_another_reference_model_or_other_data_with_as_many_pairs()
    {
        using var d = new TempDir();
        var a = TinyBase.Create(d["a"], seed: 7);
        var b = TinyBase.Create(d["b"], seed: 8);
        var first = Rankings(8);
        Preferences.WriteRankings(d["r1.jsonl"], first);
        DpoTrainer.Run(Config(a, d["r1.jsonl"], 1), d["dpo"], false);
        AssertCacheIsFresh(d["dpo"], a, first);

        // Another SFT model, the same 24 pairs, the same run directory.
        var log = new List<string>();
        DpoTrainer.Run(Config(b, d["r1.jsonl"], 1), d["dpo"], false, log.Add);
        AssertCacheIsFresh(d["dpo"], b, first);
        Assert.Contains(log, l => l.Contains("another reference model", StringComparison.Ordinal));

        // Other data, as many pairs.
        var second = Rankings(8, tag: " indeed");
        Preferences.WriteRankings(d["r2.jsonl"], second);
        log.Clear();
        DpoTrainer.Run(Config(b, d["r2.jsonl"], 1), d["dpo"], false, log.Add);
        AssertCacheIsFresh(d["dpo"], b, second);
        Assert.Contains(log, l => l.Contains("other pairs", StringComparison.Ordinal));

        // Same model, same data: the cache is used as it is.
        log.Clear();
        DpoTrainer.Run(Config(b, d["r2.jsonl"], 1), d["dpo"], false, log.Add);
        Assert.DoesNotContain(log, l => l.Contains("recomputing", StringComparison.Ordinal) || l.StartsWith("reference log-probabilities of", StringComparison.Ordinal));
    }

    [Fact]
    public void Validation_split_keeps_all_pairs_of_a_prompt_on_one_side()
    {
        var pairs = Rankings(40).SelectMany(Preferences.ToPairs).ToList();
        var (train, val) = DpoTrainer.Split(pairs, seed: 1337, valFraction: 0.25);
        Assert.Equal(pairs.Count, train.Count + val.Count);
        Assert.NotEmpty(val);
        Assert.NotEmpty(train);
        var both = train.Select(p => p.Prompt).Intersect(val.Select(p => p.Prompt)).ToList();
        Assert.True(both.Count == 0, $"prompts on both sides: {string.Join(", ", both)}");
    }

    [Fact]
    public void Policy_runs_without_dropout_so_the_first_step_loss_is_that_of_policy_equal_to_reference()
    {
        using var d = new TempDir();
        manual_seed(7);
        using (var m = new Gpt(TinyBase.Config with { ResidPdrop = 0.1, EmbdPdrop = 0.1, AttnPdrop = 0.1 }))
            HfCheckpoint.Write(d["base"], m, new ByteTokenizer());
        Preferences.WriteRankings(d["r.jsonl"], Rankings(8));
        DpoTrainer.Run(Config(d["base"], d["r.jsonl"], 1) with { Beta = 0.5 }, d["dpo"], false);
        var first = MetricsLog.Read(d["dpo/metrics.jsonl"])[0];
        // Step 0: π = π_ref, so h = 0 for every pair: margins 0 and loss −log σ(0) = log 2, as in eval mode.
        Assert.Equal(0.0, first["rewards/margins"], tolerance: 1e-4);
        Assert.Equal(Math.Log(2), first["loss"], tolerance: 1e-4);
    }

    [Fact]
    public void Ipo_run_starts_at_the_squared_target_and_reports_per_token_mean_log_probs()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"]);
        Preferences.WriteRankings(d["r.jsonl"], Rankings(8));
        DpoTrainer.Run(Config(baseDir, d["r.jsonl"], 2) with { LossType = "ipo", Beta = 0.5 }, d["ipo"], false);
        var rows = MetricsLog.Read(d["ipo/metrics.jsonl"]);
        // Step 0: h = 0, so (0 − 1/(2τ))² = 1 at τ = 0.5.
        Assert.Equal(1.0, rows[0]["loss"], tolerance: 1e-4);
        Assert.True(rows[1]["loss"] < rows[0]["loss"], $"loss {rows[0]["loss"]} → {rows[1]["loss"]}");
        // A random byte-level model gives each token about log(1/259) = −5.56 nats: a mean, not a sum over ~10 tokens.
        Assert.InRange(rows[0]["logps/chosen"], -8.0, -3.0);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Every_parameter_changes_in_training(string family)
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"], family: family);
        Preferences.WriteRankings(d["r.jsonl"], Rankings(8));
        DpoTrainer.Run(Config(baseDir, d["r.jsonl"], 3), d["dpo"], false);
        var (before, _, _) = HfCheckpoint.Load(baseDir);
        var (after, _, _) = HfCheckpoint.Load(d["dpo/model"]);
        var trained = after.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in before.named_parameters())
            Assert.False(p.equal(trained[name]).all().item<bool>(), $"{name} did not change");
    }

    [Fact]
    public void Gradient_accumulation_1x8_and_8x1_give_the_same_loss_curve()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"]);
        Preferences.WriteRankings(d["r.jsonl"], Rankings(12));
        var c = Config(baseDir, d["r.jsonl"], 4);
        DpoTrainer.Run(c with { Optim = c.Optim with { BatchSize = 8, GradAccum = 1 } }, d["a"], false);
        DpoTrainer.Run(c with { Optim = c.Optim with { BatchSize = 1, GradAccum = 8 } }, d["b"], false);
        var a = MetricsLog.Read(d["a/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        var b = MetricsLog.Read(d["b/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        Assert.Equal(4, a.Length);
        Assert.True(a[^1] < a[0] - 1e-3, $"the loss did not move: {a[0]} → {a[^1]}");
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i], 4);
    }
}
