using System.CommandLine;
using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Native;

namespace ChatForge.Cli.Commands;

public static class GenerateCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the model directory", "DIR", required: true);
        var prompt = Opt.Text("--prompt", "the text to continue", "TEXT", required: true);
        var verb = new Command("generate", "print only the completion of a prompt") { model, prompt };
        var sampling = new SamplingOptionSet(verb, new SamplingOptions { MaxNewTokens = 128, Temperature = 0.8, TopK = 0, TopP = 1.0 }, "tokens to generate");
        var device = Opt.Device();
        var stop = Opt.Text("--stop", "stop before this text", "STR");
        verb.Add(device);
        verb.Add(stop);
        verb.SetAction(r =>
        {
            var o = sampling.Read(r) with { StopStrings = r.GetValue(stop) is { } s ? new[] { s } : Array.Empty<string>() };
            var (m, tok, _) = HfCheckpoint.Load(r.GetValue(model)!, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var c = new TextGenerator(m, tok).Complete(r.GetValue(prompt)!, o);
            if (c.PromptTruncated)
                ui.Log($"warning: the prompt was longer than the context; kept its last {c.PromptTokens} tokens");
            ui.Out.WriteLine(c.Text);
            return 0;
        });
        return verb;
    }
}

public static class ScoreCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the model directory", "DIR", required: true);
        var text = Opt.Text("--text", "the text to score", "TEXT", required: true);
        var device = Opt.Device();
        var verb = new Command("score", "print the mean negative log-likelihood of TEXT's tokens after the first, nats per token") { model, text, device };
        verb.SetAction(r =>
        {
            var (m, tok, _) = HfCheckpoint.Load(r.GetValue(model)!, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var (nats, _) = Perplexity.Score(m, tok, r.GetValue(text)!);
            ui.Out.WriteLine(nats.ToString("F6", CultureInfo.InvariantCulture));
            return 0;
        });
        return verb;
    }
}
