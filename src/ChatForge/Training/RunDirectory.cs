using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Util;

namespace ChatForge.Training;

/// <summary>
/// A run directory: config.json (resolved), metrics.jsonl, summary.json, PNG plots, tensorboard/,
/// model/ (latest checkpoint in HF layout, with training_state/ inside for --resume) and best/.
/// </summary>
public sealed class RunDirectory
{
    public string Root { get; }
    public RunDirectory(string root) { Root = Path.GetFullPath(root); Directory.CreateDirectory(Root); }

    public string ConfigPath => Path.Combine(Root, "config.json");
    public string MetricsPath => Path.Combine(Root, "metrics.jsonl");
    public string SummaryPath => Path.Combine(Root, "summary.json");
    public string ModelDir => Path.Combine(Root, "model");
    public string BestDir => Path.Combine(Root, "best");
    public string TensorBoardDir => Path.Combine(Root, "tensorboard");
    public string StateDir => Path.Combine(ModelDir, TrainingState.DirName);
    /// <summary>The path of a file (or folder) <paramref name="name"/> in the run directory.</summary>
    public string PathOf(string name) => Path.Combine(Root, name);

    public bool HasCheckpoint
    {
        get { Util.AtomicFile.Recover(ModelDir); return File.Exists(Path.Combine(StateDir, TrainingState.StateFile)); }
    }

    public void WriteConfig<T>(T config) => AtomicFile.WriteAllText(ConfigPath, Json.Serialize(config));

    public void WriteSummary(IReadOnlyDictionary<string, object?> summary)
    {
        var o = new JsonObject();
        foreach (var (k, v) in summary) o[k] = Node(v);
        AtomicFile.WriteAllText(SummaryPath, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>A summary value as JSON, a number that is not finite (at any depth: in lists and dictionaries too) as null.</summary>
    static JsonNode? Node(object? v) => v switch
    {
        double d => double.IsFinite(d) ? JsonValue.Create(d) : null,
        float f => float.IsFinite(f) ? JsonValue.Create(f) : null,
        string or null or JsonNode => JsonSerializer.SerializeToNode(v),
        System.Collections.IDictionary dict => new JsonObject(dict.Keys.Cast<object>().Select(k => KeyValuePair.Create(k.ToString()!, Node(dict[k])))),
        System.Collections.IEnumerable list => new JsonArray(list.Cast<object?>().Select(Node).ToArray()),
        _ => JsonSerializer.SerializeToNode(v),
    };

    public static Dictionary<string, JsonElement> ReadSummary(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        try { return JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(File.ReadAllText(path))!; }
        catch (JsonException e) { throw new ChatForgeException($"{path}: not valid JSON: {e.Message}", e); }
    }

    /// <summary>
    /// What every trainer does first: threads and determinism, the seed, the device, the run directory
    /// (with the resolved config written into it), and whether a checkpoint there is to be resumed.
    /// </summary>
    public static (RunDirectory Run, TorchSharp.torch.Device Device, bool Resuming) Begin<T>(T config, string outDir, bool resume) where T : RunOptions
    {
        Native.TorchRuntime.ConfigureThreads(config.Deterministic, config.Threads);
        Native.TorchRuntime.Seed(config.Seed);
        var dev = Native.TorchRuntime.ResolveDevice(config.Device);
        var run = new RunDirectory(outDir);
        bool resuming = resume && run.HasCheckpoint;
        run.WriteConfig(config);
        return (run, dev, resuming);
    }
}
