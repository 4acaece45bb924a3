using System.CommandLine;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class DpoCommand
{
    public static Command Create(Ui ui)
    {
        var sft = Opt.Text("--sft", "the SFT model: the policy starts here, the frozen reference is a copy", "DIR");
        var preset = Opt.Preset();
        var config = Opt.Config();
        var data = Opt.List("--data", "pairs or rankings JSONL (default: sentiment rankings collected from the SFT model)");
        var outDir = Opt.Out();
        var beta = Opt.Number("--beta", "β: higher keeps the policy closer to the reference", "B");
        var lossType = Opt.Text("--loss-type", "sigmoid (the DPO paper) or ipo", "sigmoid|ipo");
        var labelSmoothing = Opt.Number("--label-smoothing", "ε of conservative DPO: the probability that a label is flipped", "E");
        var reward = Opt.Text("--reward", "a reward model, only to report the policy's RM score", "RM");
        var maxSteps = Opt.MaxSteps();
        var resume = Opt.Resume();
        var verb = new Command("dpo", "DPO on preference pairs, no reward model") { sft, preset, config, data, outDir, beta, lossType, labelSmoothing, reward, maxSteps, resume };
        var run = new RunOptionSet(verb);
        var collect = new CollectOptionSet(verb, sampling: false);
        verb.SetAction(r =>
        {
            var c = run.Apply(DpoConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            if (r.GetValue(sft) is { } m) c = c with { Model = m };
            if (r.GetValue(data) is { Count: > 0 } d) c = c with { Data = d };
            if (r.GetValue(beta) is { } b) c = c with { Beta = b };
            if (r.GetValue(lossType) is { } lt) c = c with { LossType = lt };
            if (r.GetValue(labelSmoothing) is { } ls) c = c with { LabelSmoothing = ls };
            if (r.GetValue(reward) is { } rw) c = c with { Reward = rw };
            if (r.GetValue(maxSteps) is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
            c = c with { Collect = collect.Apply(c.Collect, r) };
            var dir = r.GetValue(outDir)!;
            ui.TrainAndReport("dpo", c.Optim.MaxSteps, "dpo", dir, "policy", p => DpoTrainer.Run(c, dir, r.GetValue(resume), ui.Log, p));
            return 0;
        });
        return verb;
    }
}
