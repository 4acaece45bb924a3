using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Pipeline;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

static class CollectArgs
{
    public static readonly string[] Names = { "task", "k", "prompts", "noise", "tie-margin", "max-new-tokens" };

    public static CollectConfig Apply(CollectConfig c, Args a)
    {
        if (a.Get("task") is { } t) c = c with { Task = t };
        if (a.Int("k") is { } k) c = c with { K = k };
        if (a.Int("prompts") is { } p) c = c with { Prompts = p };
        if (a.Double("noise") is { } n) c = c with { NoiseStd = n };
        if (a.Double("tie-margin") is { } tm) c = c with { TieMargin = tm };
        if (a.Int("max-new-tokens") is { } mx) c = c with { MaxNewTokens = mx };
        if (a.Long("seed") is { } s) c = c with { Seed = s };
        return c;
    }
}

public static class PreferencesCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, CollectArgs.Names.Concat(new[] { "model", "out", "pairs", "cache", "seed", "device" }));
        var c = CollectArgs.Apply(new CollectConfig(), a);
        var (model, tok, _) = HfCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var (rankings, stats) = PreferenceCollection.Collect(model, tok, Corpora.OpenOrFetch(a.Get("cache"), ui.Log), c, ui.Log);
        var outPath = a.Require("out");
        Preferences.WriteRankings(outPath, rankings);
        if (a.Get("pairs") is { } pairs) Preferences.WritePairs(pairs, rankings.SelectMany(Preferences.ToPairs));
        ui.Summary("preferences", stats.ToDictionary(k => k.Key, k => (object?)k.Value));
        ui.Out.WriteLine(Path.GetFullPath(outPath));
        return 0;
    }
}

public static class RewardCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, CollectArgs.Names.Concat(new[] { "sft", "preset", "config", "out", "max-steps", "seed", "device", "cache", "threads", "margin" }),
                         flags: new[] { "resume", "deterministic" }, multi: new[] { "data" });
        var c = RewardConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.Get("sft") is { } m) c = c with { Model = m };
        if (a.All("data").Count > 0) c = c with { Data = a.All("data") };
        c = c with { Collect = CollectArgs.Apply(c.Collect, a) };
        if (a.Int("max-steps") is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
        if (a.Long("seed") is { } seed) c = c with { Seed = seed };
        if (a.Double("margin") is { } mg) c = c with { Margin = mg };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Get("device") is { } dev) c = c with { Device = dev };
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Int("threads") is { } th) c = c with { Threads = th };
        var outDir = a.Require("out");
        var summary = ui.Train("reward", c.Optim.MaxSteps, p => RewardTrainer.Run(c, outDir, a.Flag("resume"), ui.Log, p));
        ui.Summary("reward model", summary);
        ui.Log($"reward model: {Path.Combine(Path.GetFullPath(outDir), "model")}");
        return 0;
    }
}

public static class RateCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "prompt", "response", "device" }, flags: new[] { "chat", "raw" });
        var (rm, tok) = RewardCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var r = rm.Rate(tok, new[] { (a.Require("prompt"), a.Flag("chat"), a.Require("response")) }, normalize: !a.Flag("raw"))[0];
        ui.Out.WriteLine(r.ToString("F6", CultureInfo.InvariantCulture));
        return 0;
    }
}

public static class BonCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "policy", "reward", "n", "prompt", "out", "eval-prompts", "max-new-tokens", "temperature", "seed", "cache", "device" }, flags: new[] { "chat" });
        var device = TorchRuntime.ResolveDevice(a.Get("device") ?? "auto");
        var (policy, tok, _) = HfCheckpoint.Load(a.Require("policy"), device);
        var (rm, _) = RewardCheckpoint.Load(a.Require("reward"), device);
        var o = new SamplingOptions { Temperature = a.Double("temperature") ?? 1.0, MaxNewTokens = a.Int("max-new-tokens") ?? 24, Seed = a.Long("seed") ?? 1 };
        int n = a.Int("n") ?? 16;
        if (n < 1) throw new ChatForgeException($"--n must be ≥ 1, got {n}");
        if (a.Get("prompt") is { } prompt)
        {
            var c = BestOfN.Sample(new TextGenerator(policy, tok), rm, tok, new[] { prompt }, a.Flag("chat"), n, o)[0];
            var best = BestOfN.Best(c, n);
            ui.Log($"best of {n}: reward {best.Reward:F3} (candidates {string.Join(", ", c.Select(x => x.Reward.ToString("F2", CultureInfo.InvariantCulture)))})");
            ui.Out.WriteLine(best.Text);
            return 0;
        }
        var corpora = Corpora.OpenOrFetch(a.Get("cache"), ui.Log);
        var prompts = SentimentPrompts.Build(corpora).Eval.Take(a.Int("eval-prompts") ?? 64).ToList();
        var ns = new[] { 1, 2, 4, 8, 16, 32, 64 }.Where(x => x <= n).ToList();
        if (!ns.Contains(n)) ns.Add(n);
        ui.Log($"best-of-N on {prompts.Count} held-out sentiment prompts, N = {string.Join(", ", ns)}");
        var points = BestOfNEval.Curve(policy, rm, tok, SentimentOracle.FromCorpora(corpora), prompts, ns, o);
        var run = new RunDirectory(a.Require("out"));
        var summary = BestOfNStage.Write(run, points);
        ui.Table("best-of-N", points.Select(p => ($"N={p.N}", $"oracle {p.Oracle:F3} ± {p.OracleSd:F3}   RM {p.Rm:F3}   KL {p.Kl:F3}")));
        ui.Log((string)summary["note"]!);
        return 0;
    }
}
