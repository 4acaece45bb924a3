using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Modeling;

/// <summary>LoRA settings, PEFT's names.</summary>
public sealed record LoraConfig
{
    /// <summary>Rank r of the update B·A.</summary>
    public int R { get; init; } = 8;
    /// <summary>Scaling numerator: the update is multiplied by lora_alpha / r.</summary>
    public double LoraAlpha { get; init; } = 16;
    /// <summary>Dropout on the adapter's input while training.</summary>
    public double LoraDropout { get; init; } = 0.05;
    /// <summary>Module names (suffixes) to adapt: c_attn, c_proj (attention and MLP), c_fc.</summary>
    public List<string> TargetModules { get; init; } = new() { "c_attn", "c_proj", "c_fc" };

    public void Validate(string source)
    {
        if (R < 1) throw new ChatForgeException($"{source}: 'lora.r' = {R} is out of range (≥ 1)");
        if (LoraAlpha <= 0) throw new ChatForgeException($"{source}: 'lora.lora_alpha' = {LoraAlpha} is out of range (> 0)");
        if (LoraDropout is < 0 or >= 1) throw new ChatForgeException($"{source}: 'lora.lora_dropout' = {LoraDropout} is out of range (0 ≤ p < 1)");
        var known = new[] { "c_attn", "c_proj", "c_fc" };
        foreach (var t in TargetModules)
            if (!known.Contains(t)) throw new ChatForgeException($"{source}: 'lora.target_modules' has '{t}' (known: {string.Join(", ", known)})");
        if (TargetModules.Count == 0) throw new ChatForgeException($"{source}: 'lora.target_modules' is empty");
    }
}

/// <summary>
/// Attaching, saving (PEFT layout: adapter_config.json + adapter_model.safetensors with
/// base_model.model.transformer.h.N.….lora_A.weight names), loading and merging LoRA adapters.
/// </summary>
public static class Lora
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    static bool Targeted(string path, LoraConfig c) => c.TargetModules.Any(t => path.EndsWith("." + t, StringComparison.Ordinal));

    /// <summary>Adds fresh adapters to the targeted layers and freezes every base parameter.</summary>
    public static void Attach(Gpt model, LoraConfig c)
    {
        c.Validate("lora");
        var device = model.TokenEmbedding.device;
        foreach (var p in model.parameters()) p.requires_grad = false;
        foreach (var (path, lin) in model.Linears())
            if (Targeted(path, c))
                lin.Adapter = new LoraAdapter(lin.InFeatures, lin.OutFeatures, c.R, c.LoraAlpha, c.LoraDropout, device);
    }

    /// <summary>Adapter parameters under PEFT's names.</summary>
    public static IEnumerable<(string Name, Parameter Param)> Parameters(Gpt model)
    {
        foreach (var (path, lin) in model.Linears())
            if (lin.Adapter is { } a)
            {
                yield return ($"base_model.model.transformer.{path}.lora_A.weight", a.A);
                yield return ($"base_model.model.transformer.{path}.lora_B.weight", a.B);
            }
    }

    public static bool HasAdapters(Gpt model) => model.Linears().Any(l => l.Linear.Adapter is not null);

    public static void Save(string dir, Gpt model, LoraConfig c, string? baseModel)
    {
        Directory.CreateDirectory(dir);
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = c.R,
            ["lora_alpha"] = c.LoraAlpha,
            ["lora_dropout"] = c.LoraDropout,
            ["target_modules"] = new JsonArray(c.TargetModules.Select(t => (JsonNode)t!).ToArray()),
            ["fan_in_fan_out"] = true, // GPT-2's Conv1D layers
            ["bias"] = "none",
            ["base_model_name_or_path"] = baseModel,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["use_rslora"] = false,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["revision"] = null,
        };
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(dir, WeightsFile), Parameters(model).ToDictionary(p => p.Name, p => (Tensor)p.Param),
            new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Reads adapter_config.json (PEFT's keys; others are ignored).</summary>
    public static LoraConfig ReadConfig(string dir)
    {
        var path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path))!.AsObject(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new ChatForgeException($"{path}: not valid JSON: {e.Message}", e); }
        if ((string?)o["peft_type"] != "LORA") throw new ChatForgeException($"{path}: peft_type must be LORA");
        var c = new LoraConfig
        {
            R = (int?)o["r"] ?? throw new ChatForgeException($"{path}: missing key 'r'"),
            LoraAlpha = (double?)o["lora_alpha"] ?? throw new ChatForgeException($"{path}: missing key 'lora_alpha'"),
            LoraDropout = (double?)o["lora_dropout"] ?? 0,
            TargetModules = o["target_modules"]?.AsArray().Select(n => (string)n!).ToList() ?? throw new ChatForgeException($"{path}: missing key 'target_modules'"),
        };
        c.Validate(path);
        return c;
    }

    /// <summary>Attaches the adapters saved in <paramref name="dir"/> to <paramref name="model"/>.</summary>
    public static LoraConfig Load(string dir, Gpt model)
    {
        var c = ReadConfig(dir);
        Attach(model, c);
        var path = Path.Combine(dir, WeightsFile);
        var tensors = SafeTensors.Load(path);
        using (no_grad())
            foreach (var (name, p) in Parameters(model))
            {
                if (!tensors.Remove(name, out var t)) throw new ChatForgeException($"{path}: missing tensor '{name}'");
                if (!t.shape.SequenceEqual(p.shape)) throw new ChatForgeException($"{path}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", p.shape)}]");
                p.copy_(t);
            }
        if (tensors.Count > 0) throw new ChatForgeException($"{path}: unexpected tensor '{tensors.Keys.First()}'");
        return c;
    }

    /// <summary>Folds every adapter into its base weight (W += (α/r)·B·A) and removes it; the model is then a plain GPT-2.</summary>
    public static void Merge(Gpt model)
    {
        using var _ = no_grad();
        foreach (var (_, lin) in model.Linears())
        {
            if (lin.Adapter is not { } a) continue;
            lin.weight.add_(a.DeltaWeight());
            lin.Adapter = null;
            a.Dispose();
        }
        foreach (var p in model.parameters()) p.requires_grad = true;
    }
}
