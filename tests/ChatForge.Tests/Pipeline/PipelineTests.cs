using System.Text.Json;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Pipeline;

public class PipelineTests
{
    [Fact]
    public void The_pipeline_runs_every_stage_writes_the_report_and_skips_completed_stages()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var c = PipelineConfig.Tiny with { Cache = cache, Deterministic = true };
        var log = new List<string>();
        var reportPath = ChatForge.Training.Pipeline.Run(c, d["run"], log: log.Add);

        var report = JsonDocument.Parse(File.ReadAllText(reportPath)).RootElement;
        foreach (var model in new[] { "base", "sft", "best_of_n", "ppo", "dpo" })
            foreach (var key in new[] { "capitals_heldout_accuracy", "capitals_seen_accuracy", "spam_accuracy", "word_sentiment_accuracy", "oracle_sentiment", "oracle_sentiment_sd", "rm_score", "kl_to_sft", "pretrain_val_loss" })
                Assert.True(report.GetProperty("models").GetProperty(model).TryGetProperty(key, out _), $"{model}.{key}");
        Assert.True(report.GetProperty("reward_model").TryGetProperty("heldout_accuracy", out _));
        var methods = report.GetProperty("frontier").EnumerateArray().Select(p => p.GetProperty("method").GetString()).Distinct().Order().ToList();
        Assert.Equal(new[] { "best_of_n", "dpo", "ppo" }, methods);
        foreach (var p in report.GetProperty("frontier").EnumerateArray())
            foreach (var k in new[] { "method", "param", "kl", "oracle_sentiment" }) Assert.True(p.TryGetProperty(k, out _), k);
        Assert.True(report.GetProperty("wall_seconds").GetDouble() > 0);
        var md = File.ReadAllText(d["run/report/report.md"]);
        Assert.Contains("| dpo |", md);
        Assert.Contains("DPO vs PPO", md);
        Assert.True(File.Exists(d["run/report/frontier.png"]));
        foreach (var stage in new[] { "pretrain", "sft", "reward", "ppo", "dpo" }) Assert.True(File.Exists(d[$"run/{stage}/model/model.safetensors"]), stage);

        // A second run finds every stage complete.
        log.Clear();
        ChatForge.Training.Pipeline.Run(c, d["run"], log: log.Add);
        Assert.Equal(PipelineConfig.Stages.Length, log.Count(l => l.EndsWith("complete, skipped", StringComparison.Ordinal)));

        // --from dpo redoes dpo and everything after it, nothing before.
        log.Clear();
        var before = File.GetLastWriteTimeUtc(d["run/ppo/summary.json"]);
        ChatForge.Training.Pipeline.Run(c, d["run"], from: "dpo", log: log.Add);
        Assert.Contains("[ppo] complete, skipped", log);
        Assert.Contains("[dpo] running", log);
        Assert.Equal(before, File.GetLastWriteTimeUtc(d["run/ppo/summary.json"]));
        Assert.Throws<ChatForgeException>(() => ChatForge.Training.Pipeline.Run(c, d["run"], from: "nope"));
    }

    [Theory]
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
        var e = Assert.Throws<ChatForgeException>(() => ChatForge.Training.Pipeline.Run(c, d["run"]));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(d["run"]), "the pipeline created its directory before failing");
    }
}
