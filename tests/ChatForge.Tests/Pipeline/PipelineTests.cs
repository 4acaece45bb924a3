using System.Text.Json;
using ChatForge.Pipeline;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Pipeline;

public class PipelineTests
{
    /// <summary>The value of <paramref name="key"/>: a JSON number (not null, not missing), finite, in [lo, hi].</summary>
    static double Number(JsonElement parent, string key, double lo, double hi, string where)
    {
        Assert.True(parent.TryGetProperty(key, out var v), $"{where}.{key} is missing");
        Assert.True(v.ValueKind == JsonValueKind.Number, $"{where}.{key} is {v.ValueKind}, not a number");
        double x = v.GetDouble();
        Assert.True(double.IsFinite(x) && x >= lo && x <= hi, $"{where}.{key} = {x} is outside [{lo}, {hi}]");
        return x;
    }

    [Fact]
    public void The_sentiment_pipeline_runs_every_stage_and_reports_the_reward_KL_frontier()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var c = PipelineConfig.Tiny with { Task = "sentiment", Ppo = PipelineConfig.Tiny.Ppo with { Rounds = 1 }, Cache = cache, Deterministic = true };
        var log = new List<string>();
        var reportPath = PipelineRunner.Run(c, d["run"], log: log.Add);

        var report = JsonDocument.Parse(File.ReadAllText(reportPath)).RootElement;
        var models = report.GetProperty("models");
        var accuracies = Report.AccuracyKeys;
        Assert.Contains("multiturn_accuracy", accuracies);
        Assert.Contains("capitals_unseen_phrasing_accuracy", accuracies);
        foreach (var model in new[] { "base", "sft", "sft_lora", "ppo", "dpo" })
        {
            var m = models.GetProperty(model);
            foreach (var key in accuracies.Concat(ChatForge.Evaluation.TaskEval.AlignmentKeys)) Number(m, key, 0, 1, model);
            Number(m, "pretrain_val_loss", 0.1, Math.Log(259) + 1, model); // byte vocabulary: ln 259 ≈ 5.6 at random
            Number(m, "kl_to_sft", -20, 20, model);
        }
        // Full fine-tuning against LoRA: the cost of each, LoRA training far fewer parameters.
        var full = models.GetProperty("sft");
        var lora = models.GetProperty("sft_lora");
        foreach (var (name, m) in new[] { ("sft", full), ("sft_lora", lora) })
        {
            Number(m, "wall_seconds", 1e-3, 3600, name);
            Number(m, "peak_rss_mb", 10, 1e6, name);
            Assert.Equal(5, m.GetProperty("capitals_heldout_by_phrasing").EnumerateObject().Count(p => DemoTasksPhrasing(p.Name, unseen: false)));
            Assert.Equal(5, m.GetProperty("capitals_heldout_by_phrasing").EnumerateObject().Count(p => DemoTasksPhrasing(p.Name, unseen: true)));
        }
        Assert.True(Number(lora, "trainable_parameters", 1, 1e9, "sft_lora") < Number(full, "trainable_parameters", 1, 1e9, "sft") / 4);
        Assert.Equal("sft_lora", report.GetProperty("main_sft").GetString());
        foreach (var model in new[] { "base", "sft", "sft_lora", "best_of_n", "ppo", "dpo" })
        {
            var m = models.GetProperty(model);
            Number(m, "oracle_sentiment", -3, 3, model);       // 8-token continuations: |score| ≤ √8
            Number(m, "oracle_sentiment_sd", 0, 3, model);
            Number(m, "rm_score", -20, 20, model);
        }
        Assert.Equal(0.0, Number(models.GetProperty("sft_lora"), "kl_to_sft", 0, 0, "sft_lora"));   // the main SFT model against itself
        Number(models.GetProperty("sft"), "kl_to_sft", 1e-6, 1e3, "sft");                          // the other one, against the main
        var bon = models.GetProperty("best_of_n");
        Assert.Equal(Math.Log(2) - 0.5, Number(bon, "kl_to_sft", 0, 1, "best_of_n"), 9);   // log N − (N−1)/N, N = 2
        foreach (var key in accuracies.Concat(ChatForge.Evaluation.TaskEval.AlignmentKeys).Append("pretrain_val_loss")) Assert.Equal(JsonValueKind.Null, bon.GetProperty(key).ValueKind);
        // The texts the harmless and honest criteria rank, as configured.
        Assert.Equal(c.Alignment.RefusalText, report.GetProperty("refusal_text").GetString());
        Assert.Equal(c.Alignment.AbstainText, report.GetProperty("abstain_text").GetString());
        var rm = report.GetProperty("reward_model");
        Number(rm, "heldout_labeler_accuracy", 0, 1, "reward_model");
        // The oracle-based figures exist when the oracle told some pair of responses apart; this tiny model's
        // 8-byte continuations rarely hold a lexicon word, so they may tie everywhere: then, and only then, null.
        bool oracleSeparates = File.ReadLines(d["run/reward/rankings.jsonl"]).Select(l => JsonDocument.Parse(l).RootElement)
            .Any(r => r.GetProperty("oracle_scores").EnumerateArray().Select(x => x.GetDouble()).Distinct().Count() > 1);
        if (oracleSeparates) Number(rm, "labeler_agreement", 0, 1, "reward_model");
        else
        {
            Assert.Equal(JsonValueKind.Null, rm.GetProperty("labeler_agreement").ValueKind);
            Assert.Equal(JsonValueKind.Null, rm.GetProperty("heldout_accuracy").ValueKind);
        }
        if (rm.GetProperty("heldout_accuracy").ValueKind != JsonValueKind.Null) Number(rm, "heldout_accuracy", 0, 1, "reward_model");
        var methods = report.GetProperty("frontier").EnumerateArray().Select(p => p.GetProperty("method").GetString()).Distinct().Order().ToList();
        Assert.Equal(new[] { "best_of_n", "dpo", "ppo" }, methods);
        foreach (var p in report.GetProperty("frontier").EnumerateArray())
        {
            Number(p, "param", 0, 16, "frontier");
            Number(p, "kl", -20, 20, "frontier");
            Number(p, "oracle_sentiment", -3, 3, "frontier");
        }
        Assert.True(report.GetProperty("wall_seconds").GetDouble() > 0);
        var md = File.ReadAllText(d["run/report/report.md"]);
        Assert.Contains("| dpo |", md);
        Assert.Contains("| sft_lora |", md);
        Assert.Contains("What is the capital of {state}?", md);
        Assert.Contains("DPO vs PPO", md);
        Assert.Contains("## Helpful, honest, harmless", md);
        Assert.True(File.Exists(d["run/report/frontier.png"]));
        Assert.Equal("sentiment", report.GetProperty("task").GetString());
    }

    [Fact]
    public void The_default_pipeline_aligns_to_the_three_criteria_over_PPO_rounds_reports_each_and_skips_completed_stages()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var c = PipelineConfig.Tiny with { Cache = cache, Deterministic = true };
        Assert.Equal("hhh", c.Task);
        Assert.Equal("hhh", PipelineConfig.Demo.Task);
        Assert.True(PipelineConfig.Demo.Ppo.Rounds >= 2 && c.Ppo.Rounds == 2);
        var log = new List<string>();
        var reportPath = PipelineRunner.Run(c, d["run"], log: log.Add);

        var report = JsonDocument.Parse(File.ReadAllText(reportPath)).RootElement;
        Assert.Equal("hhh", report.GetProperty("task").GetString());
        var models = report.GetProperty("models");
        // The rows, in order: ppo_round1 is the first round's policy, ppo the last round's.
        Assert.Equal(new[] { "base", "sft", "sft_lora", "best_of_n", "ppo_round1", "ppo", "dpo" }, models.EnumerateObject().Select(p => p.Name));
        foreach (var model in new[] { "base", "sft", "sft_lora", "ppo_round1", "ppo", "dpo" })
        {
            var m = models.GetProperty(model);
            foreach (var key in Report.AccuracyKeys.Concat(ChatForge.Evaluation.TaskEval.AlignmentKeys)) Number(m, key, 0, 1, model);
            Number(m, "oracle_alignment", 0, 1, model);
            Number(m, "rm_score", -20, 20, model);
            Number(m, "kl_to_sft", -50, 50, model);
            Number(m, "pretrain_val_loss", 0.1, Math.Log(259) + 1, model);
            Assert.False(m.TryGetProperty("oracle_sentiment", out _), model);
        }
        // Best-of-N: the rates of its chosen answers; the instruction tasks (and so helpful accuracy) are not measured for it.
        var bon = models.GetProperty("best_of_n");
        foreach (var key in ChatForge.Evaluation.TaskEval.AlignmentKeys.Skip(1)) Number(bon, key, 0, 1, "best_of_n");
        Assert.Equal(JsonValueKind.Null, bon.GetProperty("helpful_accuracy").ValueKind);
        Assert.Equal(Math.Log(2) - 0.5, Number(bon, "kl_to_sft", 0, 1, "best_of_n"), 9);
        // The two rounds' policies differ: round 2 continued PPO from round 1's.
        Assert.True(File.Exists(d["run/ppo/policy_round1/model.safetensors"]));
        Assert.NotEqual(File.ReadAllBytes(d["run/ppo/policy_round1/model.safetensors"]), File.ReadAllBytes(d["run/ppo/model/model.safetensors"]));
        var perRound = report.GetProperty("rounds").GetProperty("per_round").EnumerateArray().ToList();
        Assert.Equal(2, perRound.Count);
        Assert.Equal("ppo_round1", perRound[0].GetProperty("model").GetString());
        Assert.Equal("ppo", perRound[1].GetProperty("model").GetString());
        foreach (var (key, _) in Report.Criteria)
        {
            var v = report.GetProperty("rounds").GetProperty("final_vs_round1").GetProperty(key).GetProperty("verdict").GetString();
            Assert.Contains(v, new[] { "better", "equal", "worse" });
            Assert.True(report.GetProperty("dpo_vs_ppo").TryGetProperty(key, out _), key);
        }
        Assert.Equal(models.GetProperty("ppo").GetProperty("helpful_accuracy").GetDouble() - models.GetProperty("sft_lora").GetProperty("helpful_accuracy").GetDouble(),
                     report.GetProperty("alignment_tax").GetDouble(), 9);
        foreach (var g in new[] { "harmful_refusal", "benign_refusal", "hallucination_halved", "honest_abstain", "knowable_abstain", "alignment_tax", "reward_model" })
            Assert.True(report.GetProperty("goals").TryGetProperty(g, out _), g);
        // The reward model learned from rankings of every family, and reports each.
        var families = report.GetProperty("reward_model").GetProperty("heldout_accuracy_by_family");
        Assert.Equal(JsonValueKind.Object, families.ValueKind);
        Assert.Equal(c.Alignment.RefusalText, report.GetProperty("refusal_text").GetString());
        Assert.Equal(0, report.GetProperty("frontier").GetArrayLength());   // the frontier is the sentiment preset's
        var md = File.ReadAllText(d["run/report/report.md"]);
        foreach (var part in new[] { "| ppo_round1 |", "### Goals", "### DPO against PPO, per criterion", "### PPO rounds", "### Best-of-N", "## Helpful, honest, harmless", "--preset sentiment" })
            Assert.Contains(part, md);
        // One held-out prompt of each kind answered by every model, best-of-N included.
        var suite = ChatForge.Data.DemoSuite.Build(ChatForge.Data.Corpora.Open(cache));
        var harmful = ChatForge.Data.AlignmentTasks.EvalSet(ChatForge.Data.AlignmentTasks.Build(suite)).First(p => p.Kind == "harmful").Prompt;
        var section = md[md.IndexOf($"**{harmful}**", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n\n**", 4, StringComparison.Ordinal)];
        foreach (var model in new[] { "sft", "best_of_n", "ppo_round1", "ppo", "dpo" }) Assert.Contains($"- *{model}*:", section);

        foreach (var stage in new[] { "pretrain", "sft", "reward", "ppo", "dpo" }) Assert.True(File.Exists(d[$"run/{stage}/model/model.safetensors"]), stage);

        // A second run finds every stage complete.
        log.Clear();
        PipelineRunner.Run(c, d["run"], log: log.Add);
        Assert.Equal(PipelineConfig.Stages.Length, log.Count(l => l.EndsWith("complete, skipped", StringComparison.Ordinal)));

        // --from dpo redoes dpo and everything after it, nothing before.
        log.Clear();
        var before = File.GetLastWriteTimeUtc(d["run/ppo/summary.json"]);
        PipelineRunner.Run(c, d["run"], from: "dpo", log: log.Add);
        Assert.Contains("[ppo] complete, skipped", log);
        Assert.Contains("[dpo] running", log);
        Assert.Equal(before, File.GetLastWriteTimeUtc(d["run/ppo/summary.json"]));
        Assert.Throws<ChatForgeException>(() => PipelineRunner.Run(c, d["run"], from: "nope"));
    }

    static bool DemoTasksPhrasing(string key, bool unseen) =>
        (unseen ? ChatForge.Data.DemoTasks.UnseenCapitalQuestions : ChatForge.Data.DemoTasks.CapitalQuestions).Select(Report.PhrasingKey).Contains(key);

    [Theory]
    [InlineData("""{"main_sft": "sft_full"}""", "'main_sft' = 'sft_full' must be sft or sft_lora")]
    [InlineData("""{"ppo": {"beta": -1}}""", "(ppo): 'beta' = -1")]
    [InlineData("""{"sft": {"optim": {"max_steps": 0}}}""", "(sft): 'optim.max_steps' = 0")]
    [InlineData("""{"reward": {"collect": {"k": 1}}}""", "(reward): 'collect.k' = 1")]
    [InlineData("""{"ppo": {"round_collect": {"noise_std": -1}}}""", "(ppo): 'round_collect.noise_std' = -1")]
    [InlineData("""{"dpo": {"loss_type": "hinge"}}""", "(dpo): 'loss_type' = hinge")]
    [InlineData("""{"frontier": {"dpo_steps": 0}}""", "'frontier.dpo_steps' = 0")]
    [InlineData("""{"threads": 0}""", "'threads' = 0")]
    [InlineData("""{"task": "imdb"}""", "'task' = imdb (hhh, sentiment)")]
    public void A_bad_value_for_any_stage_fails_before_any_work_naming_the_key(string json, string expected)
    {
        using var d = new TempDir();
        var c = ConfigMerge.Overlay(PipelineConfig.Tiny with { Cache = FakeCorpora.Create(d["cache"]) }, json, "cfg.json");
        var e = Assert.Throws<ChatForgeException>(() => PipelineRunner.Run(c, d["run"]));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(d["run"]), "the pipeline created its directory before failing");
    }

    [Fact]
    public void The_sentiment_preset_is_the_DPO_papers_set_up_and_an_unknown_preset_is_named()
    {
        var c = PipelineConfig.Load("sentiment", null);
        Assert.Equal("sentiment", c.Task);
        var r = c.Resolve("p");
        Assert.Equal("sentiment", r.Reward.Collect.Task);
        Assert.Equal("sentiment", r.Ppo.Task);
        Assert.Equal(1, r.Ppo.Rounds);
        Assert.NotEmpty(r.Frontier);
        // The default: every stage on the alignment task, the frontier off.
        var h = PipelineConfig.Load(null, null).Resolve("p");
        Assert.Equal(("hhh", "hhh", "hhh"), (h.Reward.Collect.Task, h.Ppo.Task, h.Ppo.RoundCollect.Task));
        Assert.Empty(h.Frontier);
        var e = Assert.Throws<ChatForgeException>(() => PipelineConfig.Load("imdb", null));
        Assert.Contains("unknown preset 'imdb' (demo, sentiment, tiny)", e.Message);
    }
}
