using System.Globalization;
using ChatForge.Tests.Support;
using Xunit;

namespace ChatForge.Tests.Cli;

public class RewardCliTests
{
    [Fact]
    public void Preferences_reward_rate_and_bon_run_from_the_command_line()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var baseDir = TinyBase.Create(d["base"]);
        var pref = CliRunner.Run("preferences", "--model", baseDir, "--cache", cache, "--task", "capitals", "--k", "3", "--prompts", "6",
                                 "--max-new-tokens", "6", "--out", d["caps.jsonl"], "--pairs", d["caps-pairs.jsonl"]);
        Assert.True(pref.Code == 0, pref.Err);
        Assert.Equal(6, File.ReadAllLines(d["caps.jsonl"]).Length);
        Assert.True(CliRunner.Run("preferences", "--model", baseDir, "--cache", cache, "--task", "harmless", "--k", "2", "--prompts", "4", "--max-new-tokens", "4", "--out", d["harm.jsonl"]).Code == 0);

        var rw = CliRunner.Run("reward", "--preset", "tiny", "--sft", baseDir, "--cache", cache, "--out", d["rm"]);
        Assert.True(rw.Code == 0, rw.Err);
        Assert.True(File.Exists(d["rm/rankings.jsonl"]));   // collected from the SFT model (sentiment task)
        Assert.True(File.Exists(d["rm/pairs.jsonl"]));
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["rm/summary.json"])).RootElement;
        Assert.True(summary.TryGetProperty("heldout_accuracy", out _));

        var rate = CliRunner.Run("rate", "--model", d["rm/model"], "--prompt", "The sea", "--response", "was calm and lovely.");
        Assert.True(rate.Code == 0, rate.Err);
        double.Parse(rate.Out.Trim(), CultureInfo.InvariantCulture);

        var one = CliRunner.Run("bon", "--policy", baseDir, "--reward", d["rm/model"], "--n", "3", "--prompt", "The sea", "--max-new-tokens", "5");
        Assert.True(one.Code == 0, one.Err);
        var curve = CliRunner.Run("bon", "--policy", baseDir, "--reward", d["rm/model"], "--n", "4", "--eval-prompts", "3", "--max-new-tokens", "5", "--cache", cache, "--out", d["bon"]);
        Assert.True(curve.Code == 0, curve.Err);
        var bon = System.Text.Json.JsonDocument.Parse(File.ReadAllText(d["bon/summary.json"])).RootElement;
        Assert.Equal(new[] { 1, 2, 4 }, bon.GetProperty("n").EnumerateArray().Select(x => x.GetInt32()));
        Assert.True(File.Exists(d["bon/best_of_n.png"]));

        var notRm = CliRunner.Run("rate", "--model", baseDir, "--prompt", "a", "--response", "b");
        Assert.Equal(1, notRm.Code);
        Assert.Contains("not a reward model", notRm.Err);
    }
}
