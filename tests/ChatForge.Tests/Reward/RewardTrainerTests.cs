using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Reward;

public class RewardTrainerTests
{
    /// <summary>K = 3 rankings ("good" best); every <paramref name="tieEvery"/>-th prompt's responses all tie (no pairs).</summary>
    static List<Ranking> Rankings(int prompts, int tieEvery = 0) => Enumerable.Range(0, prompts).Select(i => new Ranking($"Item {i}:", false,
        new[] { " good good", $" so-so {i}", " bad bad bad" },
        tieEvery > 0 && i % tieEvery == 0 ? new[] { 1, 1, 1 } : new[] { 1, 2, 3 })).ToList();

    static RewardConfig Config(string model, int steps) => RewardConfig.Tiny with
    {
        Model = model, Deterministic = true,
        Optim = RewardConfig.Tiny.Optim with { MaxSteps = steps, LogInterval = 1, EvalInterval = 0, CheckpointInterval = 0 },
    };

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Every_parameter_changes_in_training(string family)
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"], family: family);
        Preferences.WriteRankings(d["r.jsonl"], Rankings(12));
        RewardTrainer.Run(Config(baseDir, 3) with { Data = new() { d["r.jsonl"] } }, d["rm"], false);
        var (before, _, _) = HfCheckpoint.Load(baseDir);
        var (rm, _) = RewardCheckpoint.Load(d["rm/model"]);
        var trained = rm.Backbone.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        // As *ForSequenceClassification: no LM head in a reward model's files (Qwen2's is untied here).
        Assert.DoesNotContain("lm_head.weight", SafeTensors.Load(d["rm/model/model.safetensors"]).Keys);
        foreach (var (name, p) in before.named_parameters().Where(p => !before.LmHeadOnly.Contains(p.name)))
            Assert.False(p.equal(trained[name]).all().item<bool>(), $"{name} did not change");
        Assert.False(rm.ScoreWeight.eq(0).all().item<bool>(), "score.weight did not change");
    }

    [Fact]
    public void Gradient_accumulation_1x8_and_8x1_give_the_same_loss_curve_even_with_all_tie_rankings()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"]);
        // One prompt in three has no pairs, so the micro-batches of 8×1 hold unequally many counted prompts.
        var rankings = Rankings(24, tieEvery: 3);
        double[] Curve(int batch, int accum, string dir)
        {
            var c = Config(baseDir, 4);
            c = c with { Optim = c.Optim with { BatchSize = batch, GradAccum = accum } };
            var (gpt, tok, _) = HfCheckpoint.Load(baseDir);
            using var rm = new RewardModel(gpt);
            TrainingLoop.Run(new RewardTrainer(c, rm, tok, rankings.Skip(4).ToList(), rankings.Take(4).ToList()), c.Optim, new RunDirectory(d[dir]), false);
            return MetricsLog.Read(d[dir + "/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        }
        var a = Curve(8, 1, "a");
        var b = Curve(1, 8, "b");
        Assert.Equal(4, a.Length);
        Assert.True(a[^1] < a[0] - 1e-3, $"the loss did not move: {a[0]} → {a[^1]}");
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i], 4);
    }
}
