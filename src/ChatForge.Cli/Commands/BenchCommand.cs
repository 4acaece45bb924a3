using System.CommandLine;
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
        var verb = new Command("bench", "measure sgemm peak, training throughput, MFU, generation speed, peak memory") { outFile, config, preset, threads, trainSteps };
        verb.SetAction(r =>
        {
            TorchRuntime.ConfigureThreads(false, r.GetValue(threads));
            var c = PretrainConfig.Load(r.GetValue(preset), r.GetValue(config));
            var figures = Bench.Run(new Bench.Options { Config = c, TrainSteps = r.GetValue(trainSteps) ?? 10 }, ui.Log);
            ui.Table("chatforge bench", figures.Select(kv => (kv.Key, kv.Value.ToString(kv.Key == "mfu" ? "P1" : "G5", CultureInfo.InvariantCulture))));
            var json = JsonSerializer.Serialize(figures, new JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(outFile) is { } path) Util.AtomicFile.WriteAllText(path, json);
            ui.Out.WriteLine(json);
            return 0;
        });
        return verb;
    }
}
