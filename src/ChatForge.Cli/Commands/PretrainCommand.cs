using System.Globalization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PretrainCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "preset", "config", "out", "max-steps", "seed", "device", "cache", "threads" },
                         flags: new[] { "resume", "deterministic" }, multi: new[] { "data" });
        var outDir = a.Require("out");
        var c = PretrainConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.All("data").Count > 0) c = c with { Data = a.All("data") };
        if (a.Int("max-steps") is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
        if (a.Long("seed") is { } seed) c = c with { Seed = seed };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Get("device") is { } dev) c = c with { Device = dev };
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Int("threads") is { } th) c = c with { Threads = th };
        var summary = ui.Train("pretrain", c.Optim.MaxSteps, p => Pretrainer.Run(c, outDir, a.Flag("resume"), ui.Log, p));
        ui.Summary("pretraining", summary);
        if (summary["samples"] is List<Dictionary<string, string>> samples)
            foreach (var s in samples) ui.Out.WriteLine($"--- {s["prompt"]}{s["completion"]}");
        ui.Log($"model: {Path.Combine(Path.GetFullPath(outDir), "model")}");
        return 0;
    }
}
