using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Util;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// A model directory in Hugging Face's layout, GPT-2 or Llama family (model_type gpt2, llama, qwen2): config.json,
/// model.safetensors (or shards listed in model.safetensors.index.json), the tokenizer files and generation_config.json.
/// Tensor names are Hugging Face's: GPT2LMHeadModel's (transformer.h.0.attn.c_attn.weight; Conv1D weights stored
/// [in, out]; lm_head tied, so only transformer.wte.weight is stored) or LlamaForCausalLM's (model.layers.0.self_attn.q_proj.weight,
/// lm_head.weight unless tied). F32, F16 and BF16 weights are read into fp32. Loading is strict, nanoGPT-style: every
/// parameter must be there with its shape, nothing unexpected may be left over, and a config the decoder cannot run
/// is a one-line error naming the file and key.
/// </summary>
public static class HfCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string WeightsIndexFile = "model.safetensors.index.json";
    public const string GenerationConfigFile = "generation_config.json";

    /// <summary>HF's Conv1D layers (GPT-2 only), stored [in, out]; our linear layers are [out, in].</summary>
    static readonly string[] Conv1D = { "attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight" };

    static bool IsConv1D(CausalLM model, string name) => model is Gpt && Conv1D.Any(s => name.EndsWith(s, StringComparison.Ordinal));

    /// <summary>The base model's parameters (attached LoRA adapters left out), by parameter name.</summary>
    static IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BaseParameters(CausalLM model) =>
        model.named_parameters().Where(p => !Lora.IsAdapterParameter(p.name));

    /// <summary>The model's weights under HF names (Conv1D tensors transposed to [in, out]), LoRA merged in when asked.</summary>
    public static Dictionary<string, Tensor> HfStateDict(CausalLM model, bool mergeLora = false, bool withoutLmHead = false)
    {
        var merged = new Dictionary<string, Tensor>();
        if (mergeLora)
            foreach (var (path, lin) in model.Linears())
                if (lin.Adapter is not null) merged[path + ".weight"] = Lora.MergedWeight(lin);
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, p) in BaseParameters(model))
        {
            if (withoutLmHead && model.LmHeadOnly.Contains(name)) continue;
            var t = merged.TryGetValue(name, out var m) ? m : p.detach();
            d[model.HfPrefix + name] = IsConv1D(model, name) ? t.t() : t;
        }
        return d;
    }

    /// <summary>
    /// Writes the files of a model directory into <paramref name="dir"/> (which the caller usually
    /// fills inside <see cref="AtomicFile.ReplaceDirectory"/>). <paramref name="extra"/> adds tensors
    /// such as a reward head's score.weight; <paramref name="configExtra"/> adds config.json keys; a null
    /// <paramref name="tokenizer"/> writes the weights and configs alone; <paramref name="dtype"/> is the stored precision;
    /// <paramref name="withoutLmHead"/> leaves an untied lm_head out (a reward or value model's layout).
    /// </summary>
    public static void Write(string dir, CausalLM model, ITokenizer? tokenizer, IReadOnlyDictionary<string, Tensor>? extra = null,
                             JsonObject? configExtra = null, GenerationDefaults? generation = null, bool mergeLora = false,
                             ScalarType dtype = ScalarType.Float32, bool withoutLmHead = false)
    {
        Directory.CreateDirectory(dir);
        var config = model.HfConfig();
        config["torch_dtype"] = dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
        if (configExtra is not null)
            foreach (var (k, v) in configExtra) config[k] = v?.DeepClone();
        var o = new JsonSerializerOptions { WriteIndented = true };
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(o));
        var tensors = HfStateDict(model, mergeLora, withoutLmHead);
        if (extra is not null) foreach (var (k, v) in extra) tensors[k] = v.detach();
        SafeTensors.Save(Path.Combine(dir, WeightsFile), tensors.Select(kv => KeyValuePair.Create(kv.Key, kv.Value.to(dtype))),
            new Dictionary<string, string> { ["format"] = "pt" });
        tokenizer?.Save(dir);
        generation ??= new GenerationDefaults();
        var gen = new JsonObject
        {
            ["bos_token_id"] = config["bos_token_id"]?.DeepClone(),
            ["eos_token_id"] = config["eos_token_id"]?.DeepClone(),
            ["pad_token_id"] = tokenizer?.EosId() ?? config["eos_token_id"]?.DeepClone(),
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
    /// <param name="withoutLmHead">a reward or value model's layout: an untied lm_head may be absent (it is never read)</param>
    public static (CausalLM Model, ITokenizer Tokenizer, Dictionary<string, Tensor> Extra) Load(string dir, Device? device = null,
        IReadOnlyCollection<string>? allowedExtra = null, bool withoutLmHead = false)
    {
        var (model, extra) = LoadModel(dir, device, allowedExtra, tokenizerCheck: true, withoutLmHead, out var tokenizer);
        return (model, tokenizer!, extra);
    }

    /// <summary>The model alone (no tokenizer files needed), and tensors not part of the LM.</summary>
    public static (CausalLM Model, Dictionary<string, Tensor> Extra) LoadModel(string dir, Device? device = null, IReadOnlyCollection<string>? allowedExtra = null) =>
        LoadModel(dir, device, allowedExtra, tokenizerCheck: false, withoutLmHead: false, out _);

    static (CausalLM, Dictionary<string, Tensor>) LoadModel(string dir, Device? device, IReadOnlyCollection<string>? allowedExtra, bool tokenizerCheck,
                                                            bool withoutLmHead, out ITokenizer? tokenizer)
    {
        if (!Directory.Exists(dir)) throw new ChatForgeException($"{dir}: model directory not found");
        var configPath = Path.Combine(dir, ConfigFile);
        var json = ReadJsonObject(configPath);
        var files = WeightFiles(dir);
        tokenizer = null;
        CausalLM model = (string?)json["model_type"] is { } mt && LlamaConfig.ModelTypes.Contains(mt)
            ? new Llama(LlamaConfig.FromHuggingFace(json, configPath))
            : new Gpt(GptConfig.FromHuggingFace(json, configPath));
        try
        {
            if (tokenizerCheck)
            {
                tokenizer = TokenizerFiles.Load(dir);
                if (tokenizer.VocabSize > model.VocabSize)
                    throw new ChatForgeException($"{dir}: tokenizer has {tokenizer.VocabSize} ids but config.json vocab_size is {model.VocabSize}");
            }
            var tensors = new Dictionary<string, Tensor>();
            foreach (var f in files)
                foreach (var (name, t) in SafeTensors.Load(f))
                    tensors[name] = t;
            var extra = Apply(model, tensors, files.Count == 1 ? files[0] : Path.Combine(dir, WeightsIndexFile), allowedExtra, withoutLmHead);
            if (device is not null && device.type != DeviceType.CPU) model.to(device);
            model.eval();
            return (model, extra);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>model.safetensors, or the shards model.safetensors.index.json lists (its weight_map's files).</summary>
    static List<string> WeightFiles(string dir)
    {
        var single = Path.Combine(dir, WeightsFile);
        var index = Path.Combine(dir, WeightsIndexFile);
        if (File.Exists(index))
        {
            var map = ReadJsonObject(index)["weight_map"] as JsonObject ?? throw new ChatForgeException($"{index}: 'weight_map' is missing");
            var files = map.Select(kv => kv.Value is JsonValue v && v.TryGetValue<string>(out var f) ? f : throw new ChatForgeException($"{index}: 'weight_map.{kv.Key}' is not a file name"))
                           .Distinct().Select(f => Path.Combine(dir, f)).ToList();
            foreach (var f in files) if (!File.Exists(f)) throw new ChatForgeException($"{index}: shard '{Path.GetFileName(f)}' is missing");
            return files;
        }
        if (File.Exists(single)) return new() { single };
        throw new ChatForgeException($"{single}: file not found (nor {WeightsIndexFile})");
    }

    /// <summary>
    /// Copies HF-named tensors into the model, nanoGPT-style assertive: names with or without the family's prefix
    /// ("transformer."), Conv1D transposed, any float dtype read into the parameter's, shapes checked, every parameter
    /// required; GPT-2's causal-mask buffers, old rotary inv_freq buffers and a tied model's lm_head.weight are ignored;
    /// other names are returned if allowed, else an error.
    /// </summary>
    public static Dictionary<string, Tensor> Apply(CausalLM model, Dictionary<string, Tensor> tensors, string source, IReadOnlyCollection<string>? allowedExtra = null,
                                                   bool withoutLmHead = false)
    {
        var remaining = new Dictionary<string, Tensor>(tensors);
        using (no_grad())
        {
            foreach (var (name, p) in BaseParameters(model))
            {
                var hf = model.HfPrefix + name;
                if (!remaining.Remove(hf, out var t) && !remaining.Remove(name, out t))
                    if (withoutLmHead && model.LmHeadOnly.Contains(name)) continue;
                    else throw new ChatForgeException($"{source}: missing tensor '{hf}'");
                bool conv = IsConv1D(model, name);
                if (conv) t = t.t();
                if (!t.shape.SequenceEqual(p.shape))
                    throw new ChatForgeException($"{source}: tensor '{hf}' has shape [{string.Join(", ", conv ? t.t().shape : t.shape)}], expected [{string.Join(", ", conv ? p.t().shape : p.shape)}]");
                p.copy_(t.to(p.dtype));
            }
        }
        bool tied = model is Gpt || model is Llama { Config.TieWordEmbeddings: true };
        foreach (var k in remaining.Keys.ToList())
            if (k.EndsWith(".attn.bias", StringComparison.Ordinal) || k.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
                || k.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) || (tied && k == "lm_head.weight"))
                remaining.Remove(k);
        var unexpected = remaining.Keys.Where(k => allowedExtra is null || !allowedExtra.Contains(k)).ToList();
        if (unexpected.Count > 0)
            throw new ChatForgeException($"{source}: unexpected tensor '{unexpected[0]}'{(unexpected.Count > 1 ? $" (and {unexpected.Count - 1} more)" : "")} (not a {model.ModelType} parameter of this config)");
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
