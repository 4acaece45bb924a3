using System.CommandLine;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class PpoCommand
{
    public static Command Create(Ui ui)
    {
        var sft = Opt.Text("--sft", "the SFT model: the policy starts here, the frozen reference is a copy", "DIR");
        var reward = Opt.Text("--reward", "the reward model (frozen)", "RM");
        var preset = Opt.Preset();
        var config = Opt.Config();
        var prompts = Opt.List("--prompts", "{\"prompt\"} JSONL (default: held-out sentiment prompts)");
        var chat = Opt.Flag("--chat", "prompts are user messages under the chat template");
        var task = Opt.Text("--task", "the demo prompts and oracle: sentiment continuations, or hhh (the helpful–honest–harmless chat prompts; later rounds rank hhh responses)", "sentiment|hhh");
        var outDir = Opt.Out();
        var iterations = Opt.Int("--iterations", "PPO iterations (rollout + update) per round");
        var beta = Opt.Number("--beta", "the KL coefficient β (initial, with --adaptive-kl)", "B");
        var adaptiveKl = Opt.Number("--adaptive-kl", "adapt β toward this KL to the reference (nats per response)", "TARGET");
        var ptxCoef = Opt.Number("--ptx-coef", "γ of PPO-ptx: weight of the pretraining loss (0: plain PPO)", "G");
        var rounds = Opt.Int("--rounds", "iterated RLHF: rounds of collect → retrain the reward model → PPO", "R");
        var valueInit = Opt.Text("--value-init", "the value model starts as the reward model or as the policy", "reward|policy");
        var resume = Opt.Resume();
        var verb = new Command("ppo", "RLHF with PPO: reward − β·KL to the SFT model (+ γ·pretraining loss)")
            { sft, reward, preset, config, prompts, chat, task, outDir, iterations, beta, adaptiveKl, ptxCoef, rounds, valueInit, resume };
        var run = new RunOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = run.Apply(PpoConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            if (r.GetValue(sft) is { } m) c = c with { Model = m };
            if (r.GetValue(reward) is { } rm) c = c with { Reward = rm };
            if (r.GetValue(prompts) is { Count: > 0 } p) c = c with { Prompts = p };
            if (r.GetValue(chat)) c = c with { Chat = true };
            if (r.GetValue(task) is { } tk) c = c with { Task = tk, RoundCollect = tk == "hhh" ? c.RoundCollect with { Task = "hhh" } : c.RoundCollect };
            if (r.GetValue(iterations) is { } it) c = c with { Iterations = it };
            if (r.GetValue(beta) is { } b) c = c with { Beta = b };
            if (r.GetValue(ptxCoef) is { } g) c = c with { PtxCoef = g };
            if (r.GetValue(rounds) is { } rd) c = c with { Rounds = rd };
            if (r.GetValue(adaptiveKl) is { } t) c = c with { AdaptiveKl = new AdaptiveKlConfig { Target = t } };
            if (r.GetValue(valueInit) is { } vi) c = c with { ValueInit = vi };
            var dir = r.GetValue(outDir)!;
            ui.TrainAndReport("ppo", (long)c.Iterations * c.Rounds, "ppo", dir, "policy", pr => PpoTrainer.Run(c, dir, r.GetValue(resume), ui.Log, pr));
            return 0;
        });
        return verb;
    }
}
