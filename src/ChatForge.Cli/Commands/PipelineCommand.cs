using ChatForge.Pipeline;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PipelineCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "preset", "config", "out", "from", "cache", "seed", "device", "threads" }, flags: new[] { "deterministic" });
        var c = PipelineConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Long("seed") is { } s) c = c with { Seed = s };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Get("device") is { } d) c = c with { Device = d };
        if (a.Int("threads") is { } t) c = c with { Threads = t };
        var outDir = a.Get("out") ?? "runs/pipeline";
        long lastStep = -1; string lastStage = "";
        var report = PipelineRunner.Run(c, outDir, a.Get("from"), ui.Log, (stage, p) =>
        {
            // One line per 10% of each stage (the stages' own bars would nest).
            long every = Math.Max(1, p.MaxSteps / 10);
            if (stage != lastStage) { lastStage = stage; lastStep = -1; }
            if (p.Step / every != lastStep / every || p.Step == p.MaxSteps)
            {
                ui.Log($"[{stage}] {p.Step}/{p.MaxSteps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s ETA {p.Eta:hh\\:mm\\:ss}");
                lastStep = p.Step;
            }
        });
        ui.Out.WriteLine(File.ReadAllText(Path.Combine(Path.GetDirectoryName(report)!, "report.md")));
        ui.Log($"report: {report}");
        return 0;
    }
}
