using ChatForge.Evaluation;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Cli;

public class SftCliTests
{
    [Fact]
    public void Sft_eval_chat_and_selfinstruct_run_from_the_command_line()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var pre = CliRunner.Run("pretrain", "--preset", "tiny", "--cache", cache, "--out", d["pre"], "--max-steps", "5");
        Assert.True(pre.Code == 0, pre.Err);
        var sft = CliRunner.Run("sft", "--preset", "tiny", "--model", d["pre/model"], "--cache", cache, "--out", d["sft"], "--max-steps", "4", "--lora");
        Assert.True(sft.Code == 0, sft.Err);
        Assert.True(File.Exists(d["sft/adapter/adapter_model.safetensors"]));
        // LoRA trains at lora_lr_multiplier (4) × the configured rate; config.json keeps the configured rate.
        var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["sft/config.json"])).RootElement;
        Assert.Equal(4, config.GetProperty("lora_lr_multiplier").GetDouble());
        var tiny = SftConfig.Tiny.Optim;
        Assert.Equal(tiny.LearningRate, config.GetProperty("optim").GetProperty("learning_rate").GetDouble());
        Assert.Equal(4 * tiny.LearningRate / (tiny.WarmupSteps + 1), MetricsLog.Read(d["sft/metrics.jsonl"])[0]["lr"], 12); // step 1 of the warm-up
        var ev = CliRunner.Run("eval", "--model", d["sft/model"], "--cache", cache, "--out", d["eval.json"]);
        Assert.True(ev.Code == 0, ev.Err);
        var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["eval.json"])).RootElement;
        foreach (var k in new[] { "capitals_heldout_accuracy", "capitals_seen_accuracy", "spam_accuracy", "word_sentiment_accuracy", "response_loss" }.Concat(TaskEval.AlignmentKeys))
            Assert.True(json.TryGetProperty(k, out _), k);
        Assert.Contains("chat template", ev.Err);
        Assert.Contains("raw questions", CliRunner.Run("eval", "--model", d["pre/model"], "--cache", cache).Err);

        var chat = CliRunner.Run("chat", "--model", d["sft/model"], "--prompt", "Hi", "--max-new-tokens", "5", "--seed", "1");
        Assert.Equal(0, chat.Code);

        var o = new StringWriter(); var e = new StringWriter();
        int code = ChatForge.Cli.CliApp.Run(new[] { "chat", "--model", d["sft/model"], "--max-new-tokens", "3" }, o, e,
            new StringReader("hello\n/system Be brief.\n/bogus\nagain\n/reset\n/exit\n"));
        Assert.Equal(0, code);
        Assert.Contains("system message set", e.ToString());
        Assert.Contains("unknown command /bogus", e.ToString());
        Assert.Contains("conversation cleared", e.ToString());

        var si = CliRunner.Run("selfinstruct", "--model", d["pre/model"], "--cache", cache, "--n", "4", "--out", d["si.jsonl"]);
        Assert.True(si.Code == 0, si.Err);
        Assert.Contains("generated 4, kept", si.Err);
    }

    [Fact]
    public void Malformed_sft_data_is_a_one_line_error_with_file_and_line()
    {
        using var d = new TempDir();
        var bad = d.Write("bad.jsonl", "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n");
        var r = CliRunner.Run("sft", "--model", TinyBase.Create(d["base"]), "--data", bad, "--out", d["run"]);
        Assert.Equal(1, r.Code);
        Assert.StartsWith("error: ", r.Err);
        Assert.Contains("bad.jsonl:2", r.Err);
    }

    [Fact]
    public void A_lora_learning_rate_multiplier_out_of_range_is_a_one_line_error_naming_the_key()
    {
        using var d = new TempDir();
        var cfg = d.Write("cfg.json", """{"lora_lr_multiplier": 0}""");
        var r = CliRunner.Run("sft", "--preset", "tiny", "--config", cfg, "--model", TinyBase.Create(d["base"]), "--lora", "--out", d["run"]);
        Assert.Equal(1, r.Code);
        Assert.StartsWith("error: ", r.Err);
        Assert.Contains("'lora_lr_multiplier' = 0", r.Err);
    }
}
