using System.CommandLine;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PretrainCommand
{
    public static Command Create(Ui ui)
    {
        var preset = Opt.Preset();
        var config = Opt.Config();
        var data = Opt.List("--data", ".txt files or {\"text\"} JSONL (default: the demo corpora)");
        var outDir = Opt.Out();
        var maxSteps = Opt.MaxSteps();
        var resume = Opt.Resume();
        var verb = new Command("pretrain", "pretrain a GPT-2 or Llama-family model (next-token prediction on raw text; model.architecture in the config)") { preset, config, data, outDir, maxSteps, resume };
        var run = new RunOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = run.Apply(PretrainConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            if (r.GetValue(data) is { Count: > 0 } d) c = c with { Data = d };
            if (r.GetValue(maxSteps) is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
            var dir = r.GetValue(outDir)!;
            var summary = ui.Train("pretrain", c.Optim.MaxSteps, p => Pretrainer.Run(c, dir, r.GetValue(resume), ui.Log, p));
            ui.Summary("pretraining", summary);
            if (summary["samples"] is List<Dictionary<string, string>> samples)
                foreach (var s in samples) ui.Out.WriteLine($"--- {s["prompt"]}{s["completion"]}");
            ui.Log($"model: {Path.Combine(Path.GetFullPath(dir), "model")}");
            return 0;
        });
        return verb;
    }
}
