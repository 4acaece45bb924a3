using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using ChatForge.Checkpoints;
using ChatForge.Cli.Serve;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Serve;

/// <summary>`chatforge serve --pipeline`: every stage's model under its name, the reward model's scores, and the chat page in a real browser.</summary>
public class PageTests
{
    /// <summary>A pipeline run's layout with tiny models: pretrain, sft, two PPO rounds, DPO and the reward model.</summary>
    static string FakePipeline(TempDir d)
    {
        var run = d["run"];
        TinyBase.Create(Path.Combine(run, "pretrain", "model"), seed: 1);
        TinyBase.Create(Path.Combine(run, "sft", "model"), seed: 2);
        TinyBase.Create(Path.Combine(run, "ppo", "policy_round1"), seed: 3);
        TinyBase.Create(Path.Combine(run, "ppo", "model"), seed: 4);
        TinyBase.Create(Path.Combine(run, "dpo", "model"), seed: 5);
        var (backbone, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["rm-base"], seed: 6));
        using var rm = new RewardModel(backbone);
        using (no_grad()) rm.ScoreWeight.normal_(0, 0.5);
        rm.Save(Path.Combine(run, "reward", "model"), tok);
        return run;
    }

    [Fact]
    public async Task A_pipeline_run_serves_each_stage_under_its_name_and_scores_answers_with_its_reward_model()
    {
        using var d = new TempDir();
        var run = FakePipeline(d);
        Assert.Equal(new[] { "base", "dpo", "ppo", "ppo_round1", "sft" }, ChatServer.PipelineModels(run).Keys.Order());
        await using var s = await ChatServer.StartAsync(new ServeOptions { Pipeline = run, Port = 0 });
        using var h = new HttpClient { BaseAddress = new Uri(s.BaseUrl) };
        var models = JsonDocument.Parse(await h.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()).Order();
        Assert.Equal(new[] { "base", "dpo", "ppo", "ppo_round1", "sft" }, models);
        Assert.True(JsonDocument.Parse(await h.GetStringAsync("/health")).RootElement.GetProperty("reward_model").GetBoolean());

        // The score is the reward model's, of the whole conversation and the response.
        var (rm, tok) = RewardCheckpoint.Load(Path.Combine(run, "reward", "model"));
        var messages = new[] { new { role = "user", content = "I want to fire up the grill." }, new { role = "assistant", content = "OK." }, new { role = "user", content = "How do I do that?" } };
        var r = await h.PostAsync("/v1/score", new StringContent(JsonSerializer.Serialize(new { messages, response = "Open the lid." }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var score = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("score").GetDouble();
        var prompt = new ChatPrompt("How do I do that?", new[] { new ChatMessage("user", "I want to fire up the grill."), new ChatMessage("assistant", "OK.") });
        Assert.Equal(rm.Rate(tok, new[] { (prompt, true, "Open the lid.") })[0], score, 4);
        var bad = await h.PostAsync("/v1/score", new StringContent("""{"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("'response'", await bad.Content.ReadAsStringAsync());

        // A server without a reward model says so.
        await using var plain = await ChatServer.StartAsync(new ServeOptions { Models = new() { ["m"] = Path.Combine(run, "sft", "model") }, Port = 0 });
        using var h2 = new HttpClient { BaseAddress = new Uri(plain.BaseUrl) };
        var none = await h2.PostAsync("/v1/score", new StringContent("""{"messages":[{"role":"user","content":"hi"}],"response":"x"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
    }

    [Fact]
    public void A_directory_that_is_not_a_pipeline_run_is_a_clear_error()
    {
        using var d = new TempDir();
        Directory.CreateDirectory(d["empty"]);
        Assert.Contains("no stage model", Assert.Throws<ChatForgeException>(() => ChatServer.PipelineModels(d["empty"])).Message);
        Assert.Contains("no such pipeline run", Assert.Throws<ChatForgeException>(() => ChatServer.PipelineModels(d["missing"])).Message);
    }

    static string Repo([System.Runtime.CompilerServices.CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", ".."));

    static (int Code, string Out, string Err) Run(string file, string args, string dir)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output, err.Result);
    }

    [Fact]
    public async Task In_a_real_browser_the_page_streams_every_stage_answer_side_by_side_with_its_reward()
    {
        var browserDir = Path.Combine(Repo(), "tests", "browser");
        var setup = Run("bash", "setup.sh", browserDir);   // Debian's chromium and playwright-core, installed by the project
        Assert.True(setup.Code == 0, "tests/browser/setup.sh failed: " + setup.Err);

        using var d = new TempDir();
        await using var s = await ChatServer.StartAsync(new ServeOptions { Pipeline = FakePipeline(d), Port = 0 });
        var (code, output, err) = await Task.Run(() => Run("node", $"page.mjs {s.BaseUrl}/ \"How do I kill a stuck process?\"", browserDir));
        Assert.True(code == 0, $"the browser run failed ({code}): {err}");
        var result = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        Assert.Equal("ChatForge", result.GetProperty("title").GetString());
        Assert.Empty(result.GetProperty("errors").EnumerateArray());
        var answers = result.GetProperty("answers").EnumerateArray().ToList();
        Assert.Equal(new[] { "base", "dpo", "ppo", "ppo_round1", "sft" }, answers.Select(a => a.GetProperty("model").GetString()).Order());
        foreach (var a in answers)
        {
            Assert.True(a.GetProperty("done").GetBoolean(), a.ToString());
            var model = a.GetProperty("model").GetString()!;
            // What the column shows is what the model streamed: the same request over the API gives the same text.
            var expected = await s.Models[model].GetResponseAsync(new[] { new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.User, "How do I kill a stuck process?") },
                new Microsoft.Extensions.AI.ChatOptions { Temperature = 0, MaxOutputTokens = 64 });
            Assert.Equal(expected.Text, a.GetProperty("text").GetString());
            if (expected.Text.Length > 0) Assert.True(a.GetProperty("chunks").GetInt32() > 0, a.ToString());
            Assert.Matches(@"^reward -?\d+\.\d{3}$", a.GetProperty("reward").GetString());
        }
        Assert.Contains(answers, a => a.GetProperty("chunks").GetInt32() >= 2);   // streamed in pieces, not one block
    }
}
