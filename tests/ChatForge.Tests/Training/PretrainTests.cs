using System.Text.Json;
using ChatForge.Checkpoints;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Training;

public class PretrainTests
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]   // model.architecture: llama
    public void A_run_directory_holds_config_metrics_summary_plot_tensorboard_and_checkpoints(string architecture)
    {
        var dir = TinyRun.DirFor(architecture);
        foreach (var f in new[] { "config.json", "metrics.jsonl", "summary.json", "loss.png", "samples.txt", "model/model.safetensors", "model/config.json", "best/model.safetensors", "model/training_state/state.json" })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(dir, "tensorboard"), "events.out.tfevents*", SearchOption.AllDirectories));
        var summary = RunDirectory.ReadSummary(Path.Combine(dir, "summary.json"));
        foreach (var k in new[] { "val_loss", "val_nats_per_byte", "tokens_per_second", "val_perplexity", "train_loss" })
            Assert.True(summary[k].ValueKind == JsonValueKind.Number, k);
        // Byte-level: nats per byte equals nats per token; it must have learned something (uniform is ln 259 = 5.56).
        Assert.Equal(summary["val_loss"].GetDouble(), summary["val_nats_per_byte"].GetDouble(), 6);
        Assert.True(summary["val_loss"].GetDouble() < 4.0, $"val_loss {summary["val_loss"]}");
        var metrics = MetricsLog.Read(Path.Combine(dir, "metrics.jsonl"));
        Assert.Equal(new double[] { 1, 10, 20, 30, 40, 50, 60 }, metrics.Select(m => m["step"]));
        Assert.True(metrics[^1]["loss"] < metrics[0]["loss"]);
        Assert.Contains(metrics, m => m.ContainsKey("val_loss"));
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "model", "config.json"))).RootElement;
        Assert.Equal(architecture, config.GetProperty("model_type").GetString());
        if (architecture == "llama") Assert.Equal(2, config.GetProperty("num_key_value_heads").GetInt32());
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Training_changes_every_parameter(string architecture)
    {
        var (trained, _, _) = HfCheckpoint.Load(TinyRun.ModelDirFor(architecture));
        manual_seed(PretrainConfig.Tiny.Seed);
        var spec = PretrainConfig.Tiny.Model with { Architecture = architecture, NHead = architecture == "llama" ? 4 : 2, NKvHead = architecture == "llama" ? 2 : null };
        using var initial = spec.Build(259, 256, 256);
        Assert.Equal(initial.named_parameters().Select(p => p.name), trained.named_parameters().Select(p => p.name));
        var after = trained.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in initial.named_parameters())
            Assert.False(p.equal(after[name]).all().item<bool>(), $"{name} did not change");
    }

    [Fact]
    public void Gradient_accumulation_1x8_and_8x1_give_the_same_loss_curve()
    {
        using var d = new TempDir();
        var c = TinyRun.Config(TinyRun.Corpus, steps: 6) with { SampleTokens = 0 };
        var one = c with { Optim = c.Optim with { BatchSize = 8, GradAccum = 1, LogInterval = 1, EvalInterval = 0 } };
        var eight = c with { Optim = c.Optim with { BatchSize = 1, GradAccum = 8, LogInterval = 1, EvalInterval = 0 } };
        Pretrainer.Run(one, d["a"], false);
        Pretrainer.Run(eight, d["b"], false);
        var a = MetricsLog.Read(d["a/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        var b = MetricsLog.Read(d["b/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        Assert.Equal(6, a.Length);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i], 4);
    }

    [Fact]
    public void Deterministic_runs_with_the_same_seed_give_identical_weights()
    {
        using var d = new TempDir();
        var c = TinyRun.Config(TinyRun.Corpus, steps: 40) with { SampleTokens = 0 };
        Pretrainer.Run(c, d["a"], false);
        Pretrainer.Run(c, d["b"], false);
        Assert.Equal(File.ReadAllBytes(d["a/model/model.safetensors"]), File.ReadAllBytes(d["b/model/model.safetensors"]));
        Pretrainer.Run(c with { Seed = 99 }, d["c"], false);
        Assert.NotEqual(File.ReadAllBytes(d["a/model/model.safetensors"]), File.ReadAllBytes(d["c/model/model.safetensors"]));
    }

    [Fact]
    public void A_run_killed_with_sigkill_and_resumed_ends_with_the_weights_of_an_uninterrupted_run()
    {
        using var d = new TempDir();
        int steps = 1500;
        var c = TinyRun.Config(TinyRun.Corpus, steps) with
        {
            SampleTokens = 0,
            Optim = TinyRun.Config(TinyRun.Corpus).Optim with { MaxSteps = steps, CheckpointInterval = 25, EvalInterval = 500, LogInterval = 25 },
        };
        var cfg = d.Write("cfg.json", Util.Json.Serialize(c));

        // Uninterrupted, in-process.
        Pretrainer.Run(c, d["full"], false);

        // Interrupted: a real process, killed (SIGKILL) as soon as a mid-run checkpoint exists.
        using var p = CliRunner.Start("pretrain", "--preset", "tiny", "--config", cfg, "--out", d["killed"]);
        var state = d["killed/model/training_state/state.json"];
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!File.Exists(state) && !p.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(5);
        bool exited = p.HasExited;
        p.Kill();
        p.WaitForExit();
        Assert.False(exited, "the run finished before it could be killed");
        var killedAt = JsonDocument.Parse(File.ReadAllText(state)).RootElement.GetProperty("step").GetInt64();
        Assert.InRange(killedAt, 1, steps - 1);

        var (code, _, err) = CliRunner.Run("pretrain", "--preset", "tiny", "--config", cfg, "--out", d["killed"], "--resume");
        Assert.True(code == 0, err);
        Assert.Equal(File.ReadAllBytes(d["full/model/model.safetensors"]), File.ReadAllBytes(d["killed/model/model.safetensors"]));
        // The metrics log has each step once.
        var stepsLogged = MetricsLog.Read(d["killed/metrics.jsonl"]).Select(m => m["step"]).ToList();
        Assert.Equal(stepsLogged.Distinct().Count(), stepsLogged.Count);
        Assert.Equal(MetricsLog.Read(d["full/metrics.jsonl"]).Select(m => m["loss"]), MetricsLog.Read(d["killed/metrics.jsonl"]).Select(m => m["loss"]));
    }

    [Fact]
    public void Config_files_reject_unknown_keys_and_bad_values_by_name()
    {
        using var d = new TempDir();
        var unknown = d.Write("u.json", """{"optim": {"max_step": 5}}""");
        Assert.Contains("max_step", Assert.Throws<ChatForgeException>(() => PretrainConfig.Load("tiny", unknown)).Message);
        var bad = d.Write("b.json", """{"optim": {"learning_rate": -1}}""");
        Assert.Contains("'optim.learning_rate' = -1", Assert.Throws<ChatForgeException>(() => PretrainConfig.Load("tiny", bad).Validate(bad)).Message);
        var over = d.Write("o.json", """{"model": {"n_layer": 3}}""");
        var c = PretrainConfig.Load("tiny", over);
        Assert.Equal(3, c.Model.NLayer);
        Assert.Equal(PretrainConfig.Tiny.Model.NEmbd, c.Model.NEmbd); // the rest of the preset stays
    }
}
