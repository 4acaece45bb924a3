using System.CommandLine;
using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Pipeline;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PreferencesCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the model that samples the responses", "DIR", required: true);
        var outFile = Opt.Out("the rankings JSONL", "FILE.jsonl");
        var pairs = Opt.Text("--pairs", "also write every ranking's pairs to this JSONL", "FILE.jsonl");
        var cache = Opt.Cache();
        var seed = Opt.Long("--seed", "seed of sampling and of the labeler's noise", "S");
        var device = Opt.Device();
        var verb = new Command("preferences", "sample K responses per prompt, rank them with the oracle labeler") { model, outFile, pairs, cache, seed, device };
        var collect = new CollectOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = collect.Apply(new CollectConfig(), r, r.GetValue(seed));
            var (m, tok, _) = HfCheckpoint.Load(r.GetValue(model)!, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var (rankings, stats) = PreferenceCollection.Collect(m, tok, Corpora.OpenOrFetch(r.GetValue(cache), ui.Log), c, ui.Log);
            var outPath = r.GetValue(outFile)!;
            Preferences.WriteRankings(outPath, rankings);
            if (r.GetValue(pairs) is { } p) Preferences.WritePairs(p, rankings.SelectMany(Preferences.ToPairs));
            ui.Summary("preferences", stats.ToDictionary(k => k.Key, k => (object?)k.Value));
            ui.Out.WriteLine(Path.GetFullPath(outPath));
            return 0;
        });
        return verb;
    }
}

public static class RewardCommand
{
    public static Command Create(Ui ui)
    {
        var sft = Opt.Text("--sft", "the SFT model whose backbone starts the reward model", "DIR");
        var preset = Opt.Preset();
        var config = Opt.Config();
        var data = Opt.List("--data", "rankings or pairs JSONL (default: sentiment rankings collected from the SFT model)");
        var outDir = Opt.Out();
        var maxSteps = Opt.MaxSteps();
        var margin = Opt.Number("--margin", "margin m in −log σ(r_w − r_l − m)", "M");
        var resume = Opt.Resume();
        var verb = new Command("reward", "train a reward model on rankings") { sft, preset, config, data, outDir, maxSteps, margin, resume };
        var run = new RunOptionSet(verb);
        var collect = new CollectOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = run.Apply(RewardConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            if (r.GetValue(sft) is { } m) c = c with { Model = m };
            if (r.GetValue(data) is { Count: > 0 } d) c = c with { Data = d };
            c = c with { Collect = collect.Apply(c.Collect, r, r.GetValue(run.Seed)) };
            if (r.GetValue(maxSteps) is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
            if (r.GetValue(margin) is { } mg) c = c with { Margin = mg };
            var dir = r.GetValue(outDir)!;
            ui.TrainAndReport("reward", c.Optim.MaxSteps, "reward model", dir, "reward model", p => RewardTrainer.Run(c, dir, r.GetValue(resume), ui.Log, p));
            return 0;
        });
        return verb;
    }
}

public static class RateCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the reward model", "RM", required: true);
        var prompt = Opt.Text("--prompt", "the prompt", "TEXT", required: true);
        var response = Opt.Text("--response", "the response to score", "TEXT", required: true);
        var device = Opt.Device();
        var chat = Opt.Flag("--chat", "the prompt is a user message under the chat template");
        var raw = Opt.Flag("--raw", "the head's output instead of the normalised score");
        var verb = new Command("rate", "a reward model's score of a response") { model, prompt, response, device, chat, raw };
        verb.SetAction(r =>
        {
            var (rm, tok) = RewardCheckpoint.Load(r.GetValue(model)!, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var score = rm.Rate(tok, new[] { ((ChatPrompt)r.GetValue(prompt)!, r.GetValue(chat), r.GetValue(response)!) }, normalize: !r.GetValue(raw))[0];
            ui.Out.WriteLine(score.ToString("F6", CultureInfo.InvariantCulture));
            return 0;
        });
        return verb;
    }
}

public static class BonCommand
{
    public static Command Create(Ui ui)
    {
        var policy = Opt.Text("--policy", "the model that samples", "DIR", required: true);
        var reward = Opt.Text("--reward", "the reward model that picks", "RM", required: true);
        var n = Opt.Int("--n", "samples per prompt (default 16)");
        var prompt = Opt.Text("--prompt", "one prompt: print the best of N", "TEXT");
        var outDir = Opt.Text("--out", "without --prompt: the run directory of the N = 1, 2, 4, … curve", "DIR");
        var evalPrompts = Opt.Int("--eval-prompts", "held-out sentiment prompts of the curve (default 64)");
        var maxNewTokens = Opt.Int("--max-new-tokens", "tokens per sample (default 24)");
        var temperature = Opt.Number("--temperature", "sampling temperature (default 1)", "T");
        var seed = Opt.Long("--seed", "sampling seed (default 1)", "S");
        var cache = Opt.Cache();
        var device = Opt.Device();
        var chat = Opt.Flag("--chat", "the prompt is a user message under the chat template");
        var verb = new Command("bon", "best-of-N: the best of N samples for one prompt, or the N = 1, 2, 4, … curve on held-out prompts")
            { policy, reward, n, prompt, outDir, evalPrompts, maxNewTokens, temperature, seed, cache, device, chat };
        verb.SetAction(r =>
        {
            var dev = TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto");
            var (pol, tok, _) = HfCheckpoint.Load(r.GetValue(policy)!, dev);
            var (rm, _) = RewardCheckpoint.Load(r.GetValue(reward)!, dev);
            var o = new SamplingOptions { Temperature = r.GetValue(temperature) ?? 1.0, MaxNewTokens = r.GetValue(maxNewTokens) ?? 24, Seed = r.GetValue(seed) ?? 1 };
            int count = r.GetValue(n) ?? 16;
            if (count < 1) throw new ChatForgeException($"--n must be ≥ 1, got {count}");
            if (r.GetValue(prompt) is { } single)
            {
                var c = BestOfN.Sample(new TextGenerator(pol, tok), rm, tok, new ChatPrompt[] { single }, r.GetValue(chat), count, o)[0];
                var best = BestOfN.Best(c, count);
                ui.Log($"best of {count}: reward {best.Reward:F3} (candidates {string.Join(", ", c.Select(x => x.Reward.ToString("F2", CultureInfo.InvariantCulture)))})");
                ui.Out.WriteLine(best.Text);
                return 0;
            }
            var corpora = Corpora.OpenOrFetch(r.GetValue(cache), ui.Log);
            var prompts = SentimentPrompts.Build(corpora).Eval.Take(r.GetValue(evalPrompts) ?? 64).ToList();
            var ns = new[] { 1, 2, 4, 8, 16, 32, 64 }.Where(x => x <= count).ToList();
            if (!ns.Contains(count)) ns.Add(count);
            ui.Log($"best-of-N on {prompts.Count} held-out sentiment prompts, N = {string.Join(", ", ns)}");
            var points = BestOfNEval.Curve(pol, rm, tok, SentimentOracle.FromCorpora(corpora), prompts, ns, o);
            var run = new RunDirectory(r.GetValue(outDir) ?? throw new ChatForgeException("--out is required"));
            var summary = BestOfNStage.Write(run, points);
            ui.Table("best-of-N", points.Select(p => ($"N={p.N}", $"oracle {p.Oracle:F3} ± {p.OracleSd:F3}   RM {p.Rm:F3}   KL {p.Kl:F3}")));
            ui.Log((string)summary["note"]!);
            return 0;
        });
        return verb;
    }
}
