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
    public void The_pipeline_runs_every_stage_writes_the_report_and_skips_completed_stages()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var c = PipelineConfig.Tiny with { Cache = cache, Deterministic = true };
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
    public void A_bad_value_for_any_stage_fails_before_any_work_naming_the_key(string json, string expected)
    {
        using var d = new TempDir();
        var c = ConfigMerge.Overlay(PipelineConfig.Tiny with { Cache = FakeCorpora.Create(d["cache"]) }, json, "cfg.json");
        var e = Assert.Throws<ChatForgeException>(() => PipelineRunner.Run(c, d["run"]));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(d["run"]), "the pipeline created its directory before failing");
    }
}
