using System.CommandLine;
using ChatForge.Pipeline;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PipelineCommand
{
    public static Command Create(Ui ui)
    {
        var preset = Opt.Text("--preset", "the base config: demo (the default: helpful–honest–harmless alignment), sentiment (the DPO paper's sentiment task and the reward–KL frontier) or tiny (seconds, for tests)", "demo|sentiment|tiny");
        var config = Opt.Config();
        var outDir = Opt.Text("--out", "the pipeline directory (default runs/pipeline)", "DIR");
        var from = Opt.Text("--from", $"rerun from this stage on ({string.Join(", ", PipelineConfig.Stages)})", "STAGE");
        var verb = new Command("pipeline", "every stage, then the report") { preset, config, outDir, from };
        var run = new RunOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = run.Apply(PipelineConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            var dir = r.GetValue(outDir) ?? "runs/pipeline";
            long lastStep = -1; string lastStage = "";
            var report = PipelineRunner.Run(c, dir, r.GetValue(from), ui.Log, (stage, p) =>
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
        });
        return verb;
    }
}
