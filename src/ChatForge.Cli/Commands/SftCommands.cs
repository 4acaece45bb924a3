using System.CommandLine;
using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Serving;
using AI = Microsoft.Extensions.AI;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class SftCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the pretrained model to start from", "DIR");
        var preset = Opt.Preset();
        var config = Opt.Config();
        var data = Opt.List("--data", "JSONL in TRL's formats (default: the demo's instruction mixture)");
        var valData = Opt.List("--val-data", "held-out JSONL for the validation loss (default: 5% of the data)");
        var outDir = Opt.Out();
        var maxSteps = Opt.MaxSteps();
        var maxLength = Opt.Int("--max-length", "sequence length; longer records are truncated (default: the model's context)");
        var lora = Opt.Flag("--lora", "LoRA adapters instead of full fine-tuning (at lora_lr_multiplier × the learning rate)");
        var loraR = Opt.Int("--lora-r", "LoRA rank (implies --lora)", "R");
        var loraAlpha = Opt.Number("--lora-alpha", "LoRA scaling numerator α (the update is scaled by α / r)", "A");
        var loraDropout = Opt.Number("--lora-dropout", "dropout on the adapters' input", "P");
        var loraTargets = Opt.List("--lora-targets", "modules to adapt: c_attn, c_proj, c_fc (implies --lora)", "MODULE");
        var packing = Opt.Flag("--packing", "pack several examples into each row");
        var noEval = Opt.Flag("--no-eval", "skip the task evaluation of the final model");
        var resume = Opt.Resume();
        var verb = new Command("sft", "instruction tuning: loss on the assistant's tokens only")
            { model, preset, config, data, valData, outDir, maxSteps, maxLength, lora, loraR, loraAlpha, loraDropout, loraTargets, packing, noEval, resume };
        var run = new RunOptionSet(verb);
        verb.SetAction(r =>
        {
            var c = run.Apply(SftConfig.Load(r.GetValue(preset), r.GetValue(config)), r);
            if (r.GetValue(model) is { } m) c = c with { Model = m };
            if (r.GetValue(data) is { Count: > 0 } d) c = c with { Data = d };
            if (r.GetValue(valData) is { Count: > 0 } vd) c = c with { ValData = vd };
            if (r.GetValue(maxSteps) is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
            if (r.GetValue(maxLength) is { } ml) c = c with { MaxLength = ml };
            if (r.GetValue(packing)) c = c with { Packing = true };
            if (r.GetValue(noEval)) c = c with { EvalTasks = false };
            if (r.GetValue(lora) || r.GetValue(loraR) is not null || r.GetValue(loraTargets) is { Count: > 0 })
            {
                var l = c.Lora ?? new LoraConfig();
                if (r.GetValue(loraR) is { } rank) l = l with { R = rank };
                if (r.GetValue(loraAlpha) is { } al) l = l with { LoraAlpha = al };
                if (r.GetValue(loraDropout) is { } dr) l = l with { LoraDropout = dr };
                if (r.GetValue(loraTargets) is { Count: > 0 } t) l = l with { TargetModules = t };
                c = c with { Lora = l };
            }
            var dir = r.GetValue(outDir)!;
            ui.TrainAndReport("sft", c.Optim.MaxSteps, "sft", dir, "model", p => SftTrainer.Run(c, dir, r.GetValue(resume), ui.Log, p));
            return 0;
        });
        return verb;
    }
}

public static class EvalCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the model directory", "DIR", required: true);
        var format = Opt.Text("--format", "ask under the chat template or as raw questions (default auto: as the model was trained)", "auto|chat|raw");
        var outFile = Opt.Text("--out", "also write the metrics to this JSON file", "FILE.json");
        var cache = Opt.Cache();
        var device = Opt.Device();
        var defaults = new AlignmentTexts();
        var refusal = Opt.Text("--refusal-text", $"the refusal that counts for the harmless keys (default \"{defaults.RefusalText}\")", "TEXT");
        var abstain = Opt.Text("--abstain-text", $"the abstention that counts for the honest keys (default \"{defaults.AbstainText}\")", "TEXT");
        var verb = new Command("eval", "held-out capitals, multi-turn, spam and word-sentiment accuracy, the helpful/honest/harmless rates and the response-token loss, for any checkpoint")
            { model, format, outFile, cache, device, refusal, abstain };
        verb.SetAction(r =>
        {
            var dir = r.GetValue(model)!;
            var f = r.GetValue(format) ?? "auto";
            if (f is not ("auto" or "chat" or "raw")) throw new ChatForgeException($"--format must be auto, chat or raw, got '{f}'");
            var (m, tok, _) = HfCheckpoint.Load(dir, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            bool chat = f == "chat" || (f == "auto" && TaskEval.IsChatModel(dir, tok));
            var suite = DemoSuite.Build(Corpora.OpenOrFetch(r.GetValue(cache), ui.Log));
            ui.Log($"evaluating {dir} ({(chat ? "chat template" : "raw questions")})");
            var texts = new AlignmentTexts { RefusalText = r.GetValue(refusal) ?? defaults.RefusalText, AbstainText = r.GetValue(abstain) ?? defaults.AbstainText };
            if (string.IsNullOrWhiteSpace(texts.RefusalText)) throw new ChatForgeException("--refusal-text is empty");
            if (string.IsNullOrWhiteSpace(texts.AbstainText)) throw new ChatForgeException("--abstain-text is empty");
            texts.Validate("eval options");
            var result = TaskEval.Run(m, tok, suite, chat, alignment: texts);
            ui.Summary("eval", result.Metrics.ToDictionary(k => k.Key, k => (object?)k.Value));
            ui.Summary("held-out capitals by phrasing", result.ByPhrasing.ToDictionary(k => k.Key.Replace("{0}", "{state}", StringComparison.Ordinal), k => (object?)k.Value));
            var report = result.Metrics.ToDictionary(k => k.Key, k => (object)k.Value);
            report["capitals_heldout_by_phrasing"] = result.ByPhrasing.ToDictionary(k => k.Key.Replace("{0}", "{state}", StringComparison.Ordinal), k => k.Value);
            var json = System.Text.Json.JsonSerializer.Serialize(report, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(outFile) is { } o) Util.AtomicFile.WriteAllText(o, json);
            ui.Out.WriteLine(json);
            ui.Err.Write(new Spectre.Console.Text(result.SamplesText()));
            return 0;
        });
        return verb;
    }
}

public static class ChatCommand
{
    public static Command Create(Ui ui, TextReader input)
    {
        var model = Opt.Text("--model", "the model directory", "DIR", required: true);
        var prompt = Opt.Text("--prompt", "answer this once and exit (default: a conversation on stdin)", "TEXT");
        var system = Opt.Text("--system", "the system message", "TEXT");
        var verb = new Command("chat", "multi-turn chat (streams; /reset, /system TEXT, /exit)") { model, prompt, system };
        var sampling = new SamplingOptionSet(verb, new SamplingOptions { MaxNewTokens = ChatSession.DefaultMaxNewTokens, Temperature = 0.7, TopK = 40, TopP = 0.95 }, "tokens per answer");
        var device = Opt.Device();
        verb.Add(device);
        verb.SetAction(r =>
        {
            var o = sampling.Read(r);
            // The IChatClient that `chatforge serve` uses: the same chat template, context handling and decoding.
            using var client = ChatForgeChatClient.Load(r.GetValue(model)!, null, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var options = new AI.ChatOptions { Temperature = (float)o.Temperature, TopP = (float)o.TopP, TopK = o.TopK, MaxOutputTokens = o.MaxNewTokens, Seed = o.Seed };
            try { client.Options(options); }
            catch (ArgumentOutOfRangeException e) { throw new ChatForgeException($"--{e.ParamName?.Replace('_', '-') switch { "max-tokens" => "max-new-tokens", var n => n }}: {e.Message.Split(" (Parameter")[0]}"); }
            var history = new List<AI.ChatMessage>();
            string? sys = r.GetValue(system);
            void Ask(string user)
            {
                history.Add(new AI.ChatMessage(AI.ChatRole.User, user));
                var messages = (sys is null ? new List<AI.ChatMessage>() : new List<AI.ChatMessage> { new(AI.ChatRole.System, sys) }).Concat(history).ToList();
                var (_, dropped) = client.Prompt(ChatForgeChatClient.Messages(messages));
                if (dropped > 0)
                {
                    history.RemoveRange(0, dropped);
                    ui.Log($"(dropped the {dropped} oldest messages to fit the context)");
                }
                var answer = new System.Text.StringBuilder();
                foreach (var u in client.GetStreamingResponseAsync(messages, options).ToBlockingEnumerable())
                {
                    ui.Out.Write(u.Text);
                    ui.Out.Flush();
                    answer.Append(u.Text);
                }
                ui.Out.WriteLine();
                history.Add(new AI.ChatMessage(AI.ChatRole.Assistant, answer.ToString().Trim()));
            }
            if (r.GetValue(prompt) is { } single)
            {
                Ask(single);
                return 0;
            }
            ui.Log("chat: /reset clears the conversation, /system TEXT sets the system message, /exit quits");
            while (true)
            {
                ui.Out.Write("> ");
                ui.Out.Flush();
                var line = input.ReadLine();
                if (line is null || line.Trim() == "/exit") return 0;
                if (line.Trim() == "/reset") { history.Clear(); ui.Log("(conversation cleared)"); continue; }
                if (line.StartsWith("/system", StringComparison.Ordinal)) { sys = line[7..].Trim() is { Length: > 0 } s ? s : null; history.Clear(); ui.Log("(system message set; conversation cleared)"); continue; }
                if (line.StartsWith('/')) { ui.Log($"unknown command {line.Split(' ')[0]} (/reset, /system TEXT, /exit)"); continue; }
                if (string.IsNullOrWhiteSpace(line)) continue;
                Ask(line);
            }
        });
        return verb;
    }
}

public static class SelfInstructCommand
{
    public static Command Create(Ui ui)
    {
        var model = Opt.Text("--model", "the model that writes the instructions", "DIR", required: true);
        var seeds = Opt.Text("--seeds", "seed instructions JSONL (default: a few of each demo task)", "FILE");
        var n = Opt.Int("--n", "instructions to generate (default 64)");
        var outFile = Opt.Out("the kept instructions JSONL", "FILE.jsonl");
        var seed = Opt.Long("--seed", "sampling seed (default 1)", "S");
        var rouge = Opt.Number("--rouge", "drop an instruction whose ROUGE-L to one already kept (or a seed) reaches this (default 0.7)", "R");
        var cache = Opt.Cache();
        var device = Opt.Device();
        var verb = new Command("selfinstruct", "synthetic instructions; says how many it kept and why it dropped the rest") { model, seeds, n, outFile, seed, rouge, cache, device };
        verb.SetAction(r =>
        {
            var (m, tok, _) = HfCheckpoint.Load(r.GetValue(model)!, TorchRuntime.ResolveDevice(r.GetValue(device) ?? "auto"));
            var seedExamples = r.GetValue(seeds) is { } s ? SftData.Load(s)
                : DemoSuite.Build(Corpora.OpenOrFetch(r.GetValue(cache), ui.Log)).Train.Where(e => e.Messages is { Count: 2 })
                    .GroupBy(e => e.Source).SelectMany(g => g.Take(4)).ToList();
            var (kept, report) = SelfInstruct.Run(new TextGenerator(m, tok), tok, seedExamples, r.GetValue(n) ?? 64, r.GetValue(seed) ?? 1, r.GetValue(rouge) ?? 0.7);
            var outPath = r.GetValue(outFile)!;
            SftData.Write(outPath, kept);
            ui.Log($"self-instruct: generated {report.Generated}, kept {report.Kept}, dropped " +
                   string.Join(", ", report.Dropped.Select(kv => $"{kv.Value} {kv.Key}")) + $" → {outPath}");
            ui.Out.WriteLine(report.Kept.ToString(CultureInfo.InvariantCulture));
            return 0;
        });
        return verb;
    }
}
