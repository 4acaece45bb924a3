using System.Text.Json;
using ChatForge.Tests.Support;
using Xunit;

namespace ChatForge.Tests.Cli;

/// <summary>The whole pipeline from the command line on a Llama-family model: every verb takes either family.</summary>
public class LlamaCliTests
{
    static void Ok((int Code, string Out, string Err) r, string verb) => Assert.True(r.Code == 0, $"{verb}: {r.Err}");

    [Fact]
    public void Pretrain_sft_lora_eval_chat_reward_dpo_ppo_and_bon_run_on_a_llama_model()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var cfg = d.Write("llama.json", """{"model": {"architecture": "llama", "n_head": 4, "n_kv_head": 2}}""");
        Ok(CliRunner.Run("pretrain", "--preset", "tiny", "--config", cfg, "--cache", cache, "--out", d["pre"], "--max-steps", "5"), "pretrain");
        var config = JsonDocument.Parse(File.ReadAllText(d["pre/model/config.json"])).RootElement;
        Assert.Equal("llama", config.GetProperty("model_type").GetString());
        Assert.Equal(2, config.GetProperty("num_key_value_heads").GetInt32());

        Ok(CliRunner.Run("sft", "--preset", "tiny", "--model", d["pre/model"], "--cache", cache, "--out", d["sft"], "--max-steps", "3", "--lora"), "sft");
        var adapter = JsonDocument.Parse(File.ReadAllText(d["sft/adapter/adapter_config.json"])).RootElement;
        Assert.Equal(new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" },
                     adapter.GetProperty("target_modules").EnumerateArray().Select(x => x.GetString()));
        Assert.Equal("llama", JsonDocument.Parse(File.ReadAllText(d["sft/model/config.json"])).RootElement.GetProperty("model_type").GetString());

        Ok(CliRunner.Run("eval", "--model", d["sft/model"], "--cache", cache, "--out", d["eval.json"]), "eval");
        Assert.True(JsonDocument.Parse(File.ReadAllText(d["eval.json"])).RootElement.TryGetProperty("response_loss", out _));
        Ok(CliRunner.Run("chat", "--model", d["sft/model"], "--prompt", "Hi", "--max-new-tokens", "4", "--seed", "1"), "chat");
        Ok(CliRunner.Run("generate", "--model", d["sft/model"], "--prompt", "The sea", "--max-new-tokens", "4"), "generate");

        Ok(CliRunner.Run("reward", "--preset", "tiny", "--sft", d["sft/model"], "--cache", cache, "--out", d["rm"], "--max-steps", "3"), "reward");
        Assert.Contains("LlamaForSequenceClassification", File.ReadAllText(d["rm/model/config.json"]));
        Ok(CliRunner.Run("rate", "--model", d["rm/model"], "--prompt", "The sea", "--response", "was calm."), "rate");
        Ok(CliRunner.Run("dpo", "--preset", "tiny", "--sft", d["sft/model"], "--data", d["rm/rankings.jsonl"], "--out", d["dpo"], "--max-steps", "2"), "dpo");
        Ok(CliRunner.Run("ppo", "--preset", "tiny", "--sft", d["sft/model"], "--reward", d["rm/model"], "--cache", cache, "--out", d["ppo"], "--iterations", "2"), "ppo");
        foreach (var run in new[] { "dpo", "ppo" })
            Assert.Equal("llama", JsonDocument.Parse(File.ReadAllText(d[run + "/model/config.json"])).RootElement.GetProperty("model_type").GetString());
        Ok(CliRunner.Run("bon", "--policy", d["ppo/model"], "--reward", d["rm/model"], "--n", "2", "--prompt", "The sea", "--max-new-tokens", "4"), "bon");
    }

    [Fact]
    public void A_lora_target_the_family_does_not_have_is_a_one_line_error_naming_the_key()
    {
        using var d = new TempDir();
        var cfg = d.Write("cfg.json", """{"lora": {"target_modules": ["c_attn"]}}""");
        var r = CliRunner.Run("sft", "--preset", "tiny", "--config", cfg, "--model", TinyBase.Create(d["base"], family: "llama"), "--lora", "--out", d["run"]);
        Assert.Equal(1, r.Code);
        Assert.StartsWith("error: ", r.Err);
        Assert.Contains("'lora.target_modules' has 'c_attn', not a module of this llama model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", r.Err);
        Assert.DoesNotContain("\n", r.Err.TrimEnd());
    }
}

/// <summary>The example configs README's walkthrough uses load and validate.</summary>
public class ExampleConfigTests
{
    static string Example(string name) => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "examples", name));

    [Fact]
    public void The_walkthrough_s_sft_and_dpo_configs_load()
    {
        var sft = ChatForge.Training.SftConfig.Load(null, Example("sft-lora-smollm2.json")) with { Model = "m" };
        sft.Validate("sft");
        Assert.Equal(16, sft.Lora!.R);
        Assert.Null(sft.Lora.TargetModules);   // every projection of the model's family
        var dpo = ChatForge.Training.DpoConfig.Load(null, Example("dpo-smollm2.json"));
        Assert.Equal(0.1, dpo.Beta);
        Assert.Equal(5e-7, dpo.Optim.LearningRate);
    }
}
