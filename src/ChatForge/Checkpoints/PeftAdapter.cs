using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Util;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// LoRA adapters in PEFT's layout: adapter_config.json + adapter_model.safetensors with
/// base_model.model.&lt;HF module path&gt;.lora_A.weight / lora_B.weight names (transformer.h.N.attn.c_attn for GPT-2,
/// model.layers.N.self_attn.q_proj for the Llama family). target_modules lists the modules actually adapted.
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    public static void Save(string dir, CausalLM model, LoraConfig c, string? baseModel)
    {
        Directory.CreateDirectory(dir);
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = c.R,
            ["lora_alpha"] = c.LoraAlpha,
            ["lora_dropout"] = c.LoraDropout,
            ["target_modules"] = new JsonArray(Lora.AdaptedModules(model).Select(t => (JsonNode)t!).ToArray()),
            ["fan_in_fan_out"] = model is Gpt, // GPT-2's Conv1D layers
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
        SafeTensors.Save(Path.Combine(dir, WeightsFile), Lora.Parameters(model).ToDictionary(p => p.Name, p => (Tensor)p.Param),
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
    public static LoraConfig Load(string dir, CausalLM model)
    {
        var c = ReadConfig(dir);
        Lora.Attach(model, c, Path.Combine(dir, ConfigFile));
        var path = Path.Combine(dir, WeightsFile);
        var tensors = SafeTensors.Load(path);
        using (no_grad())
            foreach (var (name, p) in Lora.Parameters(model))
            {
                if (!tensors.Remove(name, out var t)) throw new ChatForgeException($"{path}: missing tensor '{name}'");
                if (!t.shape.SequenceEqual(p.shape)) throw new ChatForgeException($"{path}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", p.shape)}]");
                p.copy_(t);
            }
        if (tensors.Count > 0) throw new ChatForgeException($"{path}: unexpected tensor '{tensors.Keys.First()}'");
        return c;
    }
}
