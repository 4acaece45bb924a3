using System.CommandLine;
using ChatForge.Cli.Serve;
using System.Globalization;
using System.Text.Json;
using ChatForge.Evaluation;
using ChatForge.Native;
using ChatForge.Pipeline;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class BenchCommand
{
    public static Command Create(Ui ui)
    {
        var outFile = Opt.Text("--out", "also write the figures to this JSON file", "FILE.json");
        var config = Opt.Config();
        var preset = Opt.Preset();
        var threads = Opt.Int("--threads", "intra-op threads (default: one per core)");
        var trainSteps = Opt.Int("--train-steps", "training steps measured (default 10)");
        var serve = Opt.Flag("--serve", "instead: load a real `chatforge serve` on loopback with 1 and 8 concurrent clients (requests/s, tokens/s, latency, memory)");
        var model = Opt.Text("--model", "--serve: the chat model to serve (default: random weights of the preset's shape, byte-level vocabulary)", "DIR");
        var clients = Opt.Text("--clients", "--serve: concurrent client counts (default 1,8)", "N,N");
        var duration = Opt.Number("--duration", $"--serve: seconds of load per client count (default 20, at most {ServeBench.MaxSeconds})", "S");
        var maxTokens = Opt.Int("--max-tokens", "--serve: max_tokens of each request (default 32)");
        var llama = Opt.Text("--llama", "the Llama-family section's shape, random weights: smollm2-135m (default), tiny, or none", "SHAPE");
        var verb = new Command("bench", "measure sgemm peak, training throughput, MFU, generation speed, peak memory; or (--serve) the server under load")
            { outFile, config, preset, threads, trainSteps, serve, model, clients, duration, maxTokens, llama };
        verb.SetAction(r =>
        {
            TorchRuntime.ConfigureThreads(false, r.GetValue(threads));
            var c = PretrainConfig.Load(r.GetValue(preset), r.GetValue(config));
            Dictionary<string, double> figures;
            if (r.GetValue(serve))
            {
                var counts = (r.GetValue(clients) ?? "1,8").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(x => int.TryParse(x, CultureInfo.InvariantCulture, out var n) ? n : throw new ChatForgeException($"--clients: '{x}' is not a count")).ToList();
                figures = ServeBench.Run(new ServeBench.Options
                {
                    Model = r.GetValue(model), Shape = c.Model, Clients = counts, Seconds = r.GetValue(duration) ?? 20, MaxTokens = r.GetValue(maxTokens) ?? 32,
                }, ui.Log);
            }
            else
            {
                var shape = r.GetValue(llama) ?? "smollm2-135m";
                var o = new Bench.Options { Config = c, TrainSteps = r.GetValue(trainSteps) ?? 10 };
                o = shape switch
                {
                    "smollm2-135m" => o,
                    "tiny" => o with { Llama = Bench.TinyLlama, LlamaBatch = 2, LlamaSeqLen = 16, LlamaTrainSteps = 2, LlamaNewTokens = 8 },
                    "none" => o with { Llama = null },
                    _ => throw new ChatForgeException($"--llama: '{shape}' is not a shape (smollm2-135m, tiny, none)"),
                };
                figures = Bench.Run(o, ui.Log);
            }
            ui.Table("chatforge bench", figures.Select(kv => (kv.Key, kv.Value.ToString(kv.Key == "mfu" ? "P1" : "G5", CultureInfo.InvariantCulture))));
            var json = JsonSerializer.Serialize(figures, new JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(outFile) is { } path) Util.AtomicFile.WriteAllText(path, json);
            ui.Out.WriteLine(json);
            return 0;
        });
        return verb;
    }
}
