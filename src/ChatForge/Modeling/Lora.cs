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
    /// <summary>
    /// Module names (suffixes) to adapt; null means every projection of the model's family (<see cref="CausalLM.LoraTargets"/>):
    /// GPT-2's c_attn, c_proj (attention and MLP), c_fc; Llama's q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    /// </summary>
    public List<string>? TargetModules { get; init; }

    /// <summary>The targets for <paramref name="model"/>: the configured ones, checked against its family, or its default.</summary>
    public IReadOnlyList<string> TargetsFor(CausalLM model, string source)
    {
        if (TargetModules is null) return model.LoraTargets;
        if (TargetModules.Count == 0) throw new ChatForgeException($"{source}: 'lora.target_modules' is empty");
        foreach (var t in TargetModules)
            if (!model.LoraTargets.Contains(t))
                throw new ChatForgeException($"{source}: 'lora.target_modules' has '{t}', not a module of this {model.ModelType} model ({string.Join(", ", model.LoraTargets)})");
        return TargetModules;
    }

    public void Validate(string source)
    {
        if (R < 1) throw new ChatForgeException($"{source}: 'lora.r' = {R} is out of range (≥ 1)");
        if (LoraAlpha <= 0) throw new ChatForgeException($"{source}: 'lora.lora_alpha' = {LoraAlpha} is out of range (> 0)");
        if (LoraDropout is < 0 or >= 1) throw new ChatForgeException($"{source}: 'lora.lora_dropout' = {LoraDropout} is out of range (0 ≤ p < 1)");
        if (TargetModules is { Count: 0 }) throw new ChatForgeException($"{source}: 'lora.target_modules' is empty");
    }
}

/// <summary>
/// Attaching, saving (PEFT layout: adapter_config.json + adapter_model.safetensors with
/// base_model.model.&lt;Hugging Face module path&gt;.lora_A.weight names, e.g. base_model.model.transformer.h.0.attn.c_attn or
/// base_model.model.model.layers.0.self_attn.q_proj), and merging LoRA adapters (files: Checkpoints/PeftAdapter).
/// </summary>
public static class Lora
{
    /// <summary>The adapter's submodule name inside each adapted linear layer.</summary>
    public const string ModuleName = "lora";

    /// <summary>True for an adapter parameter's module path (…c_attn.lora.lora_A): not part of the base model.</summary>
    public static bool IsAdapterParameter(string name) => name.Split('.').Contains(ModuleName);

    /// <summary>Adds fresh adapters to the targeted layers and freezes every base parameter; returns the targets used.</summary>
    public static IReadOnlyList<string> Attach(CausalLM model, LoraConfig c, string source = "lora")
    {
        c.Validate(source);
        var targets = c.TargetsFor(model, source);
        var device = model.TokenEmbedding.device;
        foreach (var p in model.parameters()) p.requires_grad = false;
        foreach (var (path, lin) in model.Linears())
            if (targets.Any(t => path.EndsWith("." + t, StringComparison.Ordinal)))
                lin.Adapter = new LoraAdapter(lin.InFeatures, lin.OutFeatures, c.R, c.LoraAlpha, c.LoraDropout, device);
        return targets;
    }

    /// <summary>Adapter parameters under PEFT's names.</summary>
    public static IEnumerable<(string Name, Parameter Param)> Parameters(CausalLM model)
    {
        foreach (var (path, lin) in model.Linears())
            if (lin.Adapter is { } a)
            {
                yield return ($"base_model.model.{model.HfPrefix}{path}.lora_A.weight", a.A);
                yield return ($"base_model.model.{model.HfPrefix}{path}.lora_B.weight", a.B);
            }
    }

    /// <summary>The adapted modules' names (c_attn, q_proj, …), in the model's order.</summary>
    public static List<string> AdaptedModules(CausalLM model) =>
        model.Linears().Where(l => l.Linear.Adapter is not null).Select(l => l.Path[(l.Path.LastIndexOf('.') + 1)..]).Distinct().ToList();

    public static bool HasAdapters(CausalLM model) => model.Linears().Any(l => l.Linear.Adapter is not null);

    /// <summary>The base weight with the adapter folded in, W + (α/r)·B·A ([out, in]); the plain weight without an adapter.</summary>
    public static Tensor MergedWeight(LoraLinear linear) =>
        linear.Adapter is { } a ? linear.weight.detach() + a.DeltaWeight().detach() : linear.weight.detach();
}
