using System.Text.Json;
using System.Text.Json.Serialization;
using ChatForge.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// What --resume needs beside the weights, in model/training_state/: optimizer moments
/// (TorchSharp's optimizer state dict), the RNG state, and state.json (step = data position,
/// best metric, tokens seen, elapsed time). Written as part of the checkpoint directory, which is
/// swapped in atomically.
/// </summary>
public sealed record TrainingState
{
    public const string DirName = "training_state";
    public const string StateFile = "state.json";
    const string OptimizerFile = "optimizer.bin";
    const string RngFile = "rng.safetensors";
    const string SecondOptimizerFile = "optimizer2.bin";

    /// <summary>Optimizer steps completed; the next step to run. Batches are a function of the step, so this is also the data position.</summary>
    public long Step { get; init; }
    public double BestMetric { get; init; } = double.PositiveInfinity;
    public long TokensSeen { get; init; }
    public double ElapsedSeconds { get; init; }
    public long Seed { get; init; }
    /// <summary>Trainer-specific counters (PPO round, rollout index, …).</summary>
    public Dictionary<string, double> Extra { get; init; } = new();

    static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public void Save(string dir, TorchSharp.Modules.OptimizerHelper? optimizer, TorchSharp.Modules.OptimizerHelper? second = null)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, StateFile), JsonSerializer.Serialize(this, Options));
        if (optimizer is not null)
        {
            using var fs = File.Create(Path.Combine(dir, OptimizerFile));
            using var w = new BinaryWriter(fs);
            optimizer.save_state_dict(w);
        }
        if (second is not null)
        {
            using var fs = File.Create(Path.Combine(dir, SecondOptimizerFile));
            using var w = new BinaryWriter(fs);
            second.save_state_dict(w);
        }
        SafeTensors.Save(Path.Combine(dir, RngFile), new Dictionary<string, Tensor> { ["cpu"] = random.get_rng_state() });
    }

    /// <summary>state.json alone (no optimizer or RNG restored).</summary>
    public static TrainingState ReadOnly(string dir)
    {
        var path = Path.Combine(dir, StateFile);
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: no training state to resume from");
        try { return JsonSerializer.Deserialize<TrainingState>(File.ReadAllText(path), Options)!; }
        catch (JsonException e) { throw new ChatForgeException($"{path}: corrupt training state: {e.Message}", e); }
    }

    static void LoadOptimizer(string opt, TorchSharp.Modules.OptimizerHelper optimizer)
    {
        if (!File.Exists(opt)) throw new ChatForgeException($"{opt}: file not found");
        using var fs = File.OpenRead(opt);
        using var r = new BinaryReader(fs);
        try { optimizer.load_state_dict(r); }
        catch (Exception e) when (e is not ChatForgeException) { throw new ChatForgeException($"{opt}: corrupt optimizer state: {e.Message}", e); }
    }

    public static TrainingState Load(string dir, TorchSharp.Modules.OptimizerHelper? optimizer, TorchSharp.Modules.OptimizerHelper? second = null)
    {
        var state = ReadOnly(dir);
        if (optimizer is not null) LoadOptimizer(Path.Combine(dir, OptimizerFile), optimizer);
        if (second is not null) LoadOptimizer(Path.Combine(dir, SecondOptimizerFile), second);
        var rng = SafeTensors.Load(Path.Combine(dir, RngFile));
        random.set_rng_state(rng["cpu"]);
        return state;
    }
}
