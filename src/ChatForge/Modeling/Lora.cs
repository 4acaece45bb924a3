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
/// base_model.model.transformer.h.N.….lora_A.weight names), and merging LoRA adapters (files: Checkpoints/PeftAdapter).
/// </summary>
public static class Lora
{
    /// <summary>The adapter's submodule name inside each adapted linear layer.</summary>
    public const string ModuleName = "lora";

    /// <summary>True for an adapter parameter's module path (…c_attn.lora.lora_A): not part of the base model.</summary>
    public static bool IsAdapterParameter(string name) => name.Split('.').Contains(ModuleName);

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

    /// <summary>The base weight with the adapter folded in, W + (α/r)·B·A ([out, in]); the plain weight without an adapter.</summary>
    public static Tensor MergedWeight(GptLinear linear) =>
        linear.Adapter is { } a ? linear.weight.detach() + a.DeltaWeight().detach() : linear.weight.detach();
}
