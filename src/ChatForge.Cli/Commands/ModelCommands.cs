using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Native;

namespace ChatForge.Cli.Commands;

public static class GenerateCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "device", "stop" });
        var o = new SamplingOptions
        {
            MaxNewTokens = a.Int("max-new-tokens") ?? 128,
            Temperature = a.Double("temperature") ?? 0.8,
            TopK = a.Int("top-k") ?? 0,
            TopP = a.Double("top-p") ?? 1.0,
            Seed = a.Long("seed"),
            StopStrings = a.Get("stop") is { } s ? new[] { s } : Array.Empty<string>(),
        };
        o.Validate();
        var prompt = a.Require("prompt");
        var (model, tok, _) = HfCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var c = new TextGenerator(model, tok).Complete(prompt, o);
        if (c.PromptTruncated)
            ui.Log($"warning: the prompt was longer than the context; kept its last {c.PromptTokens} tokens");
        ui.Out.WriteLine(c.Text);
        return 0;
    }
}

public static class ScoreCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "text", "device" });
        var (model, tok, _) = HfCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var (nats, _) = Perplexity.Score(model, tok, a.Require("text"));
        ui.Out.WriteLine(nats.ToString("F6", CultureInfo.InvariantCulture));
        return 0;
    }
}
