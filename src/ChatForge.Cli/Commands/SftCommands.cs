using System.Globalization;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class SftCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "preset", "config", "out", "max-steps", "seed", "device", "cache", "threads", "lora-r", "lora-alpha", "lora-dropout", "max-length" },
                         flags: new[] { "resume", "deterministic", "lora", "packing", "no-eval" }, multi: new[] { "data", "val-data", "lora-targets" });
        var outDir = a.Require("out");
        var c = SftConfig.Load(a.Get("preset"), a.Get("config"));
        if (a.Get("model") is { } m) c = c with { Model = m };
        if (a.All("data").Count > 0) c = c with { Data = a.All("data") };
        if (a.All("val-data").Count > 0) c = c with { ValData = a.All("val-data") };
        if (a.Int("max-steps") is { } ms) c = c with { Optim = c.Optim with { MaxSteps = ms } };
        if (a.Long("seed") is { } seed) c = c with { Seed = seed };
        if (a.Int("max-length") is { } ml) c = c with { MaxLength = ml };
        if (a.Flag("deterministic")) c = c with { Deterministic = true };
        if (a.Flag("packing")) c = c with { Packing = true };
        if (a.Flag("no-eval")) c = c with { EvalTasks = false };
        if (a.Get("device") is { } dev) c = c with { Device = dev };
        if (a.Get("cache") is { } cache) c = c with { Cache = cache };
        if (a.Int("threads") is { } th) c = c with { Threads = th };
        if (a.Flag("lora") || a.Get("lora-r") is not null || a.All("lora-targets").Count > 0)
        {
            var l = c.Lora ?? new LoraConfig();
            if (a.Int("lora-r") is { } r) l = l with { R = r };
            if (a.Double("lora-alpha") is { } al) l = l with { LoraAlpha = al };
            if (a.Double("lora-dropout") is { } dr) l = l with { LoraDropout = dr };
            if (a.All("lora-targets").Count > 0) l = l with { TargetModules = a.All("lora-targets") };
            c = c with { Lora = l };
        }
        var summary = ui.Train("sft", c.Optim.MaxSteps, p => SftTrainer.Run(c, outDir, a.Flag("resume"), ui.Log, p));
        ui.Summary("sft", summary);
        ui.Log($"model: {Path.Combine(Path.GetFullPath(outDir), "model")}");
        return 0;
    }
}

public static class EvalCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "format", "out", "cache", "device" });
        var dir = a.Require("model");
        var format = a.Get("format") ?? "auto";
        if (format is not ("auto" or "chat" or "raw")) throw new ChatForgeException($"--format must be auto, chat or raw, got '{format}'");
        var (model, tok, _) = HfCheckpoint.Load(dir, TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        bool chat = format == "chat" || (format == "auto" && TaskEval.IsChatModel(dir));
        var suite = DemoSuite.Build(Pretrainer.OpenCorpora(a.Get("cache"), ui.Log));
        ui.Log($"evaluating {dir} ({(chat ? "chat template" : "raw questions")})");
        var r = TaskEval.Run(model, tok, suite, chat);
        ui.Summary("eval", r.Metrics.ToDictionary(k => k.Key, k => (object?)k.Value));
        var json = System.Text.Json.JsonSerializer.Serialize(r.Metrics, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        if (a.Get("out") is { } o) Util.AtomicFile.WriteAllText(o, json);
        ui.Out.WriteLine(json);
        ui.Err.Write(new Spectre.Console.Text(r.SamplesText()));
        return 0;
    }
}

public static class ChatCommand
{
    public static int Run(string[] args, Ui ui, TextReader input)
    {
        var a = new Args(args, new[] { "model", "prompt", "system", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "device" });
        var o = new SamplingOptions
        {
            MaxNewTokens = a.Int("max-new-tokens") ?? 64,
            Temperature = a.Double("temperature") ?? 0.7,
            TopK = a.Int("top-k") ?? 40,
            TopP = a.Double("top-p") ?? 0.95,
            Seed = a.Long("seed"),
        };
        o.Validate();
        var (model, tok, _) = HfCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var session = new ChatSession(model, tok, o) { System = a.Get("system") };
        if (a.Get("prompt") is { } single)
        {
            foreach (var piece in session.Ask(single)) ui.Out.Write(piece);
            ui.Out.WriteLine();
            return 0;
        }
        ui.Log("chat: /reset clears the conversation, /system TEXT sets the system message, /exit quits");
        while (true)
        {
            ui.Out.Write("> ");
            ui.Out.Flush();
            var line = input.ReadLine();
            if (line is null || line.Trim() == "/exit") return 0;
            if (line.Trim() == "/reset") { session.Reset(); ui.Log("(conversation cleared)"); continue; }
            if (line.StartsWith("/system", StringComparison.Ordinal)) { session.System = line[7..].Trim() is { Length: > 0 } s ? s : null; session.Reset(); ui.Log("(system message set; conversation cleared)"); continue; }
            if (line.StartsWith('/')) { ui.Log($"unknown command {line.Split(' ')[0]} (/reset, /system TEXT, /exit)"); continue; }
            if (string.IsNullOrWhiteSpace(line)) continue;
            int before = session.DroppedMessages;
            foreach (var piece in session.Ask(line)) { ui.Out.Write(piece); ui.Out.Flush(); }
            ui.Out.WriteLine();
            if (session.DroppedMessages > before) ui.Log($"(dropped the {session.DroppedMessages - before} oldest messages to fit the context)");
        }
    }
}

public static class SelfInstructCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "model", "seeds", "n", "out", "seed", "rouge", "cache", "device" });
        var (model, tok, _) = HfCheckpoint.Load(a.Require("model"), TorchRuntime.ResolveDevice(a.Get("device") ?? "auto"));
        var seeds = a.Get("seeds") is { } s ? SftData.Load(s)
            : DemoSuite.Build(Pretrainer.OpenCorpora(a.Get("cache"), ui.Log)).Train.Where(e => e.Messages is { Count: 2 })
                .GroupBy(e => e.Source).SelectMany(g => g.Take(4)).ToList();
        var (kept, report) = SelfInstruct.Run(new TextGenerator(model, tok), tok, seeds, a.Int("n") ?? 64, a.Long("seed") ?? 1, a.Double("rouge") ?? 0.7);
        var outPath = a.Require("out");
        SftData.Write(outPath, kept);
        ui.Log($"self-instruct: generated {report.Generated}, kept {report.Kept}, dropped " +
               string.Join(", ", report.Dropped.Select(kv => $"{kv.Value} {kv.Key}")) + $" → {outPath}");
        ui.Out.WriteLine(report.Kept.ToString(CultureInfo.InvariantCulture));
        return 0;
    }
}
