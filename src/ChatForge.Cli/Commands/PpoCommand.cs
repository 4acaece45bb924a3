using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PpoCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "sft", "reward", "preset", "config", "out", "iterations", "beta", "ptx-coef", "rounds", "adaptive-kl", "seed", "device", "cache", "threads", "value-init" },
                         flags: new[] { "resume", "deterministic", "chat" }, multi: new[] { "prompts" });
        var c = PpoConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.Get("sft") is { } m) c = c with { Model = m };
        if (a.Get("reward") is { } r) c = c with { Reward = r };
        if (a.All("prompts").Count > 0) c = c with { Prompts = a.All("prompts") };
        if (a.Flag("chat")) c = c with { Chat = true };
        if (a.Int("iterations") is { } it) c = c with { Iterations = it };
        if (a.Double("beta") is { } b) c = c with { Beta = b };
        if (a.Double("ptx-coef") is { } g) c = c with { PtxCoef = g };
        if (a.Int("rounds") is { } rd) c = c with { Rounds = rd };
        if (a.Double("adaptive-kl") is { } t) c = c with { AdaptiveKl = new AdaptiveKlConfig { Target = t } };
        if (a.Get("value-init") is { } vi) c = c with { ValueInit = vi };
        if (a.Long("seed") is { } seed) c = c with { Seed = seed };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Get("device") is { } dev) c = c with { Device = dev };
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Int("threads") is { } th) c = c with { Threads = th };
        var outDir = a.Require("out");
        var summary = ui.Train("ppo", (long)c.Iterations * c.Rounds, p => PpoTrainer.Run(c, outDir, a.Flag("resume"), ui.Log, p));
        ui.Summary("ppo", summary);
        ui.Log($"policy: {Path.Combine(Path.GetFullPath(outDir), "model")}");
        return 0;
    }
}
