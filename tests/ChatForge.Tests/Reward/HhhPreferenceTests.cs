using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Labeling;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Reward;

/// <summary>Rankings for the helpful–honest–harmless mixture, and the reward model's accuracy per family.</summary>
public class HhhPreferenceTests
{
    [Fact]
    public void Hhh_rankings_offer_the_fixed_texts_cover_every_family_and_use_training_prompts_only()
    {
        using var d = new TempDir();
        var corpora = Corpora.Open(FakeCorpora.Create(d["cache"]));
        var (gpt, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["b"]));
        var texts = new AlignmentTexts { RefusalText = "No way, not that.", AbstainText = "Unknown to me." };
        var o = new CollectConfig { Task = "hhh", K = 4, Prompts = 150, MaxNewTokens = 6, NoiseStd = 0, Alignment = texts };
        var (rankings, stats) = PreferenceCollection.Collect(gpt, tok, corpora, o);

        Assert.Equal(150, rankings.Count);
        Assert.Equal(new[] { "harmless", "helpful", "honest" }, rankings.Select(r => r.Family).Distinct().Order());
        var suite = DemoSuite.Build(corpora);
        var byPrompt = AlignmentTasks.Build(suite).ToDictionary(p => p.Input);
        var oracle = new AlignmentOracle(texts, suite.States);
        foreach (var r in rankings)
        {
            var p = byPrompt[r.Prompt];
            Assert.False(p.HeldOut, r.Prompt.Key);                              // held-out categories, phrasings and names stay unseen
            Assert.True(r.Chat);
            Assert.Equal(o.K, r.Responses.Count);
            Assert.Equal(p.Family, r.Family);
            foreach (var f in PreferenceCollection.FixedCandidates(p, texts)) Assert.Contains(f, r.Responses);
            Assert.Equal(r.Responses.Select(x => oracle.Score(p, x)), r.OracleScores!);
            // A noiseless labeler ranks a best-scoring response first: the refusal for a disallowed request, the abstention
            // for an unknowable question, the correct answer for a knowable one.
            Assert.Equal(r.OracleScores!.Max(), r.OracleScores![r.Ranks.ToList().IndexOf(1)]);
            if (p.Kind == "harmful") Assert.Equal(1, r.Ranks[r.Responses.ToList().IndexOf(texts.RefusalText)]);
            if (p.Kind == "unknowable") Assert.Equal(1.0, r.OracleScores![r.Responses.ToList().IndexOf(texts.AbstainText)]);
            if (p.Kind == "benign") Assert.Equal(0.0, r.OracleScores![r.Responses.ToList().IndexOf(texts.RefusalText)]);   // over-refusal scores nothing
        }
        Assert.Equal(1.0, stats["labeler_agreement"]);
        Assert.Throws<ChatForgeException>(() => (o with { K = 2 }).Validate("cfg"));
    }

    [Fact]
    public void The_reward_model_reports_held_out_accuracy_per_family()
    {
        using var d = new TempDir();
        var rng = new Random(4);
        string[] words = { "the", "ship", "sea", "day", "whale", "old" };
        string[] families = { "helpful", "honest", "harmless" };
        var rankings = Enumerable.Range(0, 150).Select(i =>
        {
            var resp = Enumerable.Range(0, 3).Select(k => string.Join(' ', Enumerable.Range(0, 3).Select(_ => words[rng.Next(words.Length)])) + string.Concat(Enumerable.Repeat(" good", k))).ToList();
            var scores = resp.Select(r => (double)r.Split(' ').Count(w => w == "good")).ToList();
            return new Ranking($"p{i}", true, resp, new NoisyLabeler(0, 0, i).Rank(scores), scores, families[i % 3]);
        }).ToList();
        Preferences.WriteRankings(d["r.jsonl"], rankings);
        Assert.Equal(rankings.Select(r => r.Family), Preferences.ReadRankings(d["r.jsonl"]).Select(r => r.Family));   // "family" round-trips
        var c = RewardConfig.Tiny with
        {
            Model = TinyBase.Create(d["b"]), Data = new() { d["r.jsonl"] }, Deterministic = true, ValFraction = 0.3,
            Optim = RewardConfig.Tiny.Optim with { MaxSteps = 8, EvalInterval = 4, CheckpointInterval = 4 },
        };
        RewardTrainer.Run(c, d["rm"], false);
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["rm/summary.json"])).RootElement;
        var byFamily = summary.GetProperty("heldout_accuracy_by_family");
        Assert.Equal(families.Order(), byFamily.EnumerateObject().Select(p => p.Name).Order());
        foreach (var f in byFamily.EnumerateObject()) Assert.InRange(f.Value.GetDouble(), 0, 1);

        var bad = d.Write("bad.jsonl", """{"prompt":"p","responses":["a","b"],"ranking":[1,2],"family":3}""" + "\n");
        Assert.Contains("bad.jsonl:1: 'family' must be a string", Assert.Throws<ChatForgeException>(() => Preferences.ReadRankings(bad)).Message);
    }
}
