using System.Globalization;
using System.Text.Json;
using ChatForge.Evaluation;
using ChatForge.Native;
using ChatForge.Pipeline;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class BenchCommand
{
    public static int Run(string[] args, Ui ui)
    {
        var a = new Args(args, new[] { "out", "config", "preset", "threads", "train-steps" });
        TorchRuntime.ConfigureThreads(false, a.Int("threads"));
        var config = PretrainConfig.Load(a.Get("preset"), a.Get("config"));
        var r = Bench.Run(new Bench.Options { Config = config, TrainSteps = a.Int("train-steps") ?? 10 }, ui.Log);
        ui.Table("chatforge bench", r.Select(kv => (kv.Key, kv.Value.ToString(kv.Key == "mfu" ? "P1" : "G5", CultureInfo.InvariantCulture))));
        var json = JsonSerializer.Serialize(r, new JsonSerializerOptions { WriteIndented = true });
        if (a.Get("out") is { } path) Util.AtomicFile.WriteAllText(path, json);
        ui.Out.WriteLine(json);
        return 0;
    }
}
