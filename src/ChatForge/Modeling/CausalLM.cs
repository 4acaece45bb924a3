using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Modeling;

/// <summary>
/// What every stage needs of a decoder-only language model, whichever family (GPT-2, Llama/Qwen2): token ids in, final
/// hidden states and logits out, a KV cache, its LoRA-adaptable linear layers, and its Hugging Face config and names.
/// Trainers, generation, evaluation, reward and value models and serving are written against this, never a family.
/// </summary>
public abstract class CausalLM : nn.Module<Tensor, Tensor>
{
    protected CausalLM(string name) : base(name) { }

    /// <summary>Hugging Face's model_type: gpt2, llama or qwen2.</summary>
    public abstract string ModelType { get; }
    public abstract int VocabSize { get; }
    /// <summary>Width of the hidden states (n_embd, hidden_size): what a scalar head reads.</summary>
    public abstract int HiddenSize { get; }
    /// <summary>The longest sequence the model takes (n_positions, max_position_embeddings).</summary>
    public abstract int Context { get; }
    /// <summary>The input embedding (its device is the model's).</summary>
    public abstract Parameter TokenEmbedding { get; }

    /// <summary>
    /// Prefix that turns a parameter name into its Hugging Face tensor name: "transformer." for GPT-2 (whose module is the
    /// transformer), "" for the Llama family (whose parameters already carry model. and lm_head.).
    /// </summary>
    public abstract string HfPrefix { get; }

    /// <summary>The linear layers LoRA can adapt, by module path in parameter naming (h.0.attn.c_attn, model.layers.0.self_attn.q_proj).</summary>
    public abstract IEnumerable<(string Path, LoraLinear Linear)> Linears();

    /// <summary>The token (and position) embeddings by parameter name: what SFT's freeze_embeddings keeps fixed.</summary>
    public abstract IReadOnlyList<string> EmbeddingParameters { get; }

    /// <summary>Parameters only the LM head uses (an untied lm_head.weight): a reward or value model leaves them out, as *ForSequenceClassification does.</summary>
    public virtual IReadOnlyList<string> LmHeadOnly => Array.Empty<string>();

    /// <summary>PEFT's default target_modules for this family (every projection of attention and MLP).</summary>
    public abstract IReadOnlyList<string> LoraTargets { get; }

    /// <summary>config.json's content for this model (the family's field names and model_type).</summary>
    public abstract JsonObject HfConfig();

    /// <summary>Final hidden states (B, T, C) after the last norm: what the LM head and the scalar heads read.</summary>
    /// <param name="idx">token ids (B, T)</param>
    /// <param name="positions">position ids (B, T); null means cache.Length, cache.Length+1, …</param>
    /// <param name="mask">boolean (B, 1, T, Tk) attention mask, true = may attend; null = causal</param>
    /// <param name="cache">KV cache to read and extend</param>
    public abstract Tensor Hidden(Tensor idx, Tensor? positions = null, Tensor? mask = null, KvCache? cache = null);

    /// <summary>The LM head: hidden (…, C) → logits (…, vocab).</summary>
    public abstract Tensor Logits(Tensor hidden);

    /// <summary>An empty KV cache for <paramref name="batch"/> rows of up to <paramref name="capacity"/> positions (at most the context).</summary>
    public abstract KvCache NewCache(int batch, int capacity, Device device);

    /// <summary>idx (B, T) → logits (B, T, vocab).</summary>
    public override Tensor forward(Tensor idx) => Logits(Hidden(idx));

    /// <summary>Parameters of the base model (LoRA adapters left out), the tied head counted once: HF's num_parameters().</summary>
    public long ParameterCount => named_parameters().Where(p => !Lora.IsAdapterParameter(p.name)).Sum(p => p.parameter.numel());
}
