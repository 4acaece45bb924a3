using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Reward;

public class RewardModelTests
{
    static List<Ranking> Separable(int n, int seed)
    {
        // The preferred response is the one with more "good" in it; a clear signal a tiny model can learn.
        var rng = new Random(seed);
        string[] words = { "the", "ship", "sea", "day", "whale", "old" };
        return Enumerable.Range(0, n).Select(i =>
        {
            var prompt = words[rng.Next(words.Length)] + " " + words[rng.Next(words.Length)];
            var resp = Enumerable.Range(0, 3).Select(k => string.Join(' ', Enumerable.Range(0, 4).Select(_ => words[rng.Next(words.Length)])) + string.Concat(Enumerable.Repeat(" good", k))).ToList();
            var scores = resp.Select(r => (double)r.Split(' ').Count(w => w == "good")).ToList();
            var order = resp.Select((r, j) => j).OrderBy(_ => rng.Next()).ToList();
            return new Ranking(prompt, false, order.Select(j => resp[j]).ToList(), new NoisyLabeler(0, 0, i).Rank(order.Select(j => scores[j]).ToList()), order.Select(j => scores[j]).ToList());
        }).ToList();
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Score_is_read_at_the_last_real_token_so_padding_changes_nothing(string family)
    {
        using var d = new TempDir();
        var (gpt, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["b"], family: family));
        var rm = new RewardModel(gpt);
        using (no_grad()) rm.ScoreWeight.normal_();
        rm.eval();
        var a = tok.Encode("short"); var b = tok.Encode("a longer text here");
        using var _ = no_grad();
        var (ids, last) = CausalBatch.Sequences(new[] { a, b }, tok.EosId(), CPU);
        var both = rm.ScoresAt(ids, last).data<float>().ToArray();
        var (ida, la) = CausalBatch.Sequences(new[] { a }, tok.EosId(), CPU);
        Assert.Equal(rm.ScoresAt(ida, la).item<float>(), both[0], 4);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Reward_model_learns_a_separable_preference_and_saves_in_the_hf_layout(string family)
    {
        using var d = new TempDir();
        var data = d["rankings.jsonl"];
        Preferences.WriteRankings(data, Separable(160, 1));
        var c = RewardConfig.Tiny with
        {
            Model = TinyBase.Create(d["b"], family: family), Data = new() { data }, Deterministic = true, ValFraction = 0.2,
            Optim = RewardConfig.Tiny.Optim with { MaxSteps = 60, BatchSize = 8, LearningRate = 2e-3, EvalInterval = 30, CheckpointInterval = 30 },
        };
        var summary = RewardTrainer.Run(c, d["rm"], false);
        Assert.True((double)summary["heldout_accuracy"]! > 0.8, $"held-out accuracy {summary["heldout_accuracy"]}");
        var cfg = File.ReadAllText(d["rm/model/config.json"]);
        Assert.Contains(family == "gpt2" ? "GPT2ForSequenceClassification" : "LlamaForSequenceClassification", cfg);
        Assert.Equal(new long[] { 1, 32 }, SafeTensors.Load(d["rm/model/model.safetensors"])["score.weight"].shape);
        Assert.Contains("\"num_labels\": 1", cfg);
        var (rm, tok) = RewardCheckpoint.Load(d["rm/model"]);
        Assert.NotEqual(1.0, rm.Std);
        // Normalised over the reference set: mean 0, sd 1 there; the "good" response rates higher.
        var r = rm.Rate(tok, new (ChatPrompt, bool, string)[] { ("the sea", false, "old whale day ship good good"), ("the sea", false, "old whale day ship") });
        Assert.True(r[0] > r[1]);
        Assert.True(File.Exists(d["rm/reward_accuracy.png"]));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Best_of_n_picks_the_highest_reward_candidate(string family)
    {
        using var d = new TempDir();
        var (gpt, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["b"], family: family));
        var (rmBackbone, _, _) = HfCheckpoint.Load(TinyBase.Create(d["r"], seed: 9, family: family));
        var rm = new RewardModel(rmBackbone);
        using (no_grad()) rm.ScoreWeight.normal_();
        var c = BestOfN.Sample(new TextGenerator(gpt, tok), rm, tok, new ChatPrompt[] { "The sea", "A ship" }, false, 4, new SamplingOptions { Temperature = 1, MaxNewTokens = 6, Seed = 3 });
        Assert.Equal(2, c.Count);
        Assert.All(c, x => Assert.Equal(4, x.Count));
        Assert.Equal(c[0].Max(x => x.Reward), BestOfN.Best(c[0], 4).Reward);
        Assert.Equal(c[0][0], BestOfN.Best(c[0], 1));
    }
}
