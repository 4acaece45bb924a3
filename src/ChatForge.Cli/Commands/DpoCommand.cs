using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class DpoCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "sft", "preset", "config", "out", "beta", "loss-type", "label-smoothing", "reward", "max-steps", "seed", "device", "cache", "threads", "task", "k", "prompts", "noise" },
                         flags: new[] { "resume", "deterministic" }, multi: new[] { "data" });
        var c = DpoConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.Get("sft") is { } m) c = c with { Model = m };
        if (a.All("data").Count > 0) c = c with { Data = a.All("data") };
        if (a.Double("beta") is { } b) c = c with { Beta = b };
        if (a.Get("loss-type") is { } lt) c = c with { LossType = lt };
        if (a.Double("label-smoothing") is { } ls) c = c with { LabelSmoothing = ls };
        if (a.Get("reward") is { } rw) c = c with { Reward = rw };
        if (a.Int("max-steps") is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
        if (a.Long("seed") is { } seed) c = c with { Seed = seed };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Get("device") is { } dev) c = c with { Device = dev };
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Int("threads") is { } th) c = c with { Threads = th };
        c = c with { Collect = c.Collect with
        {
            Task = a.Get("task") ?? c.Collect.Task, K = a.Int("k") ?? c.Collect.K, Prompts = a.Int("prompts") ?? c.Collect.Prompts, NoiseStd = a.Double("noise") ?? c.Collect.NoiseStd,
        } };
        var outDir = a.Require("out");
        var summary = ui.Train("dpo", c.Optim.MaxSteps, p => DpoTrainer.Run(c, outDir, a.Flag("resume"), ui.Log, p));
        ui.Summary("dpo", summary);
        ui.Log($"policy: {Path.Combine(Path.GetFullPath(outDir), "model")}");
        return 0;
    }
}
