using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Util;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// A model directory in Hugging Face's GPT-2 layout: config.json, model.safetensors (HF tensor names,
/// Conv1D weights [in, out], lm_head tied so only transformer.wte.weight is stored), the tokenizer
/// files and generation_config.json. Loading is strict: every parameter must be there with its
/// shape, and nothing unexpected may be left over.
/// </summary>
public static class HfCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string GenerationConfigFile = "generation_config.json";

    /// <summary>HF's Conv1D layers, stored [in, out]; TorchSharp's Linear is [out, in].</summary>
    static readonly string[] Conv1D = { "attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight" };

    static bool IsConv1D(string name) => Conv1D.Any(s => name.EndsWith(s, StringComparison.Ordinal));

    /// <summary>Our parameter name → HF name (and whether to transpose).</summary>
    public static string ToHf(string name) => "transformer." + name;

    /// <summary>The GPT-2 parameters, without attached LoRA adapters.</summary>
    static IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BaseParameters(Gpt model) =>
        model.named_parameters().Where(p => !Lora.IsAdapterParameter(p.name));

    /// <summary>The model's weights under HF names, Conv1D tensors transposed to [in, out].</summary>
    public static Dictionary<string, Tensor> HfStateDict(Gpt model, bool mergeLora = false)
    {
        var merged = new Dictionary<string, Tensor>();
        if (mergeLora)
            foreach (var (path, lin) in model.Linears())
                if (lin.Adapter is not null) merged[path + ".weight"] = Lora.MergedWeight(lin);
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, p) in BaseParameters(model))
        {
            var t = merged.TryGetValue(name, out var m) ? m : p.detach();
            d[ToHf(name)] = IsConv1D(name) ? t.t() : t;
        }
        return d;
    }

    /// <summary>
    /// Writes the files of a model directory into <paramref name="dir"/> (which the caller usually
    /// fills inside <see cref="AtomicFile.ReplaceDirectory"/>). <paramref name="extra"/> adds tensors
    /// such as a reward head's score.weight; <paramref name="configExtra"/> adds config.json keys.
    /// </summary>
    public static void Write(string dir, Gpt model, ITokenizer tokenizer, IReadOnlyDictionary<string, Tensor>? extra = null,
                             JsonObject? configExtra = null, GenerationDefaults? generation = null, bool mergeLora = false)
    {
        Directory.CreateDirectory(dir);
        var config = model.Config.ToHuggingFace();
        if (configExtra is not null)
            foreach (var (k, v) in configExtra) config[k] = v?.DeepClone();
        var o = new JsonSerializerOptions { WriteIndented = true };
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(o));
        var tensors = HfStateDict(model, mergeLora);
        if (extra is not null) foreach (var (k, v) in extra) tensors[k] = v.detach();
        SafeTensors.Save(Path.Combine(dir, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        tokenizer.Save(dir);
        generation ??= new GenerationDefaults();
        var gen = new JsonObject
        {
            ["bos_token_id"] = model.Config.BosTokenId,
            ["eos_token_id"] = model.Config.EosTokenId,
            ["pad_token_id"] = model.Config.EosTokenId,
            ["do_sample"] = generation.Temperature > 0,
            ["temperature"] = generation.Temperature,
            ["top_k"] = generation.TopK,
            ["top_p"] = generation.TopP,
            ["max_new_tokens"] = generation.MaxNewTokens,
            ["transformers_version"] = "4.46.0",
        };
        AtomicFile.WriteAllText(Path.Combine(dir, GenerationConfigFile), gen.ToJsonString(o));
    }

    /// <summary>Reads a model directory: the model (on <paramref name="device"/>), its tokenizer, and tensors not part of the LM (heads).</summary>
    public static (Gpt Model, ITokenizer Tokenizer, Dictionary<string, Tensor> Extra) Load(string dir, Device? device = null,
        IReadOnlyCollection<string>? allowedExtra = null)
    {
        if (!Directory.Exists(dir)) throw new ChatForgeException($"{dir}: model directory not found");
        var configPath = Path.Combine(dir, ConfigFile);
        var config = GptConfig.FromHuggingFace(ReadJsonObject(configPath), configPath);
        var weights = Path.Combine(dir, WeightsFile);
        if (!File.Exists(weights)) throw new ChatForgeException($"{weights}: file not found");
        var tokenizer = TokenizerFiles.Load(dir);
        if (tokenizer.VocabSize > config.VocabSize)
            throw new ChatForgeException($"{dir}: tokenizer has {tokenizer.VocabSize} ids but config.json vocab_size is {config.VocabSize}");
        var tensors = SafeTensors.Load(weights);
        var model = new Gpt(config);
        var extra = Apply(model, tensors, weights, allowedExtra);
        if (device is not null && device.type != DeviceType.CPU) model.to(device);
        model.eval();
        return (model, tokenizer, extra);
    }

    /// <summary>
    /// Copies HF-named tensors into the model, nanoGPT-style assertive: names with or without the
    /// "transformer." prefix, Conv1D transposed, shapes checked, every parameter required; the
    /// causal-mask buffers and the tied lm_head.weight are ignored; other names are returned if
    /// allowed, else an error.
    /// </summary>
    public static Dictionary<string, Tensor> Apply(Gpt model, Dictionary<string, Tensor> tensors, string source, IReadOnlyCollection<string>? allowedExtra = null)
    {
        var remaining = new Dictionary<string, Tensor>(tensors);
        using (no_grad())
        {
            foreach (var (name, p) in BaseParameters(model))
            {
                if (!remaining.Remove(ToHf(name), out var t) && !remaining.Remove(name, out t))
                    throw new ChatForgeException($"{source}: missing tensor '{ToHf(name)}'");
                if (IsConv1D(name)) t = t.t();
                if (!t.shape.SequenceEqual(p.shape))
                    throw new ChatForgeException($"{source}: tensor '{ToHf(name)}' has shape [{string.Join(", ", IsConv1D(name) ? t.t().shape : t.shape)}], expected [{string.Join(", ", IsConv1D(name) ? p.t().shape : p.shape)}]");
                p.copy_(t.to(p.dtype));
            }
        }
        foreach (var k in remaining.Keys.ToList())
            if (k.EndsWith(".attn.bias", StringComparison.Ordinal) || k.EndsWith(".attn.masked_bias", StringComparison.Ordinal) || k == "lm_head.weight")
                remaining.Remove(k);
        var unexpected = remaining.Keys.Where(k => allowedExtra is null || !allowedExtra.Contains(k)).ToList();
        if (unexpected.Count > 0)
            throw new ChatForgeException($"{source}: unexpected tensor '{unexpected[0]}'{(unexpected.Count > 1 ? $" (and {unexpected.Count - 1} more)" : "")}");
        return remaining;
    }

    /// <summary>A JSON object file; a missing, empty or malformed file is an error naming it.</summary>
    public static JsonObject ReadJsonObject(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        try { return JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new ChatForgeException($"{path}: empty"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new ChatForgeException($"{path}: not valid JSON: {e.Message}", e); }
    }
}

/// <summary>Sampling defaults saved in generation_config.json.</summary>
public sealed record GenerationDefaults
{
    public double Temperature { get; init; } = 0.8;
    public int TopK { get; init; } = 50;
    public double TopP { get; init; } = 0.95;
    public int MaxNewTokens { get; init; } = 128;
}
