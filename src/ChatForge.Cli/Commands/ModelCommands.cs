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
        var maxNewTokens = Opt.Int("--max-new-tokens", "tokens to generate (default 128)");
        var temperature = Opt.Number("--temperature", "sampling temperature; 0 is greedy (default 0.8)", "T");
        var topK = Opt.Int("--top-k", "sample among the K likeliest tokens (0: all; default 0)", "K");
        var topP = Opt.Number("--top-p", "nucleus sampling: the smallest set of tokens with probability ≥ P (default 1)", "P");
        var seed = Opt.Long("--seed", "sampling seed", "S");
        var device = Opt.Device();
        var stop = Opt.Text("--stop", "stop before this text", "STR");
        var verb = new Command("generate", "print only the completion of a prompt") { model, prompt, maxNewTokens, temperature, topK, topP, seed, device, stop };
        verb.SetAction(r =>
        {
            var o = new SamplingOptions
            {
                MaxNewTokens = r.GetValue(maxNewTokens) ?? 128,
                Temperature = r.GetValue(temperature) ?? 0.8,
                TopK = r.GetValue(topK) ?? 0,
                TopP = r.GetValue(topP) ?? 1.0,
                Seed = r.GetValue(seed),
                StopStrings = r.GetValue(stop) is { } s ? new[] { s } : Array.Empty<string>(),
            };
            o.Validate();
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
