using static TorchSharp.torch;

namespace ChatForge.Modeling;

/// <summary>
/// Keys and values of every layer for the positions already processed, preallocated to the
/// context length: (B, KV heads, capacity, head_size) per layer (capacity at most the context; CausalLM.NewCache). <see cref="Length"/> positions are filled.
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor[] _k, _v;
    public int Length { get; private set; }
    public int Capacity { get; }

    /// <summary>An empty cache of <paramref name="heads"/> key/value heads per layer (fewer than the query heads with GQA).</summary>
    public KvCache(int layers, int batch, int heads, int capacity, int headSize, Device device, ScalarType dtype = ScalarType.Float32)
    {
        Capacity = capacity;
        _k = new Tensor[layers];
        _v = new Tensor[layers];
        for (int l = 0; l < layers; l++)
        {
            _k[l] = zeros(batch, heads, capacity, headSize, dtype: dtype, device: device).DetachFromDisposeScope();
            _v[l] = zeros(batch, heads, capacity, headSize, dtype: dtype, device: device).DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// A decoder's inputs for <paramref name="idx"/> (B, T) after what <paramref name="cache"/> holds: the position ids
    /// (default cache.Length, cache.Length+1, …) and the mask (default: causal; after cached positions, several new tokens
    /// need an explicit one). Too long a sequence for the <paramref name="context"/> is an error.
    /// </summary>
    public static (Tensor Positions, Tensor? Mask) Inputs(Tensor idx, Tensor? positions, Tensor? mask, KvCache? cache, int context)
    {
        long t = idx.shape[1];
        int past = cache?.Length ?? 0;
        if (past + t > context)
            throw new ChatForgeException($"sequence of {past + t} tokens is longer than the model's context ({context})");
        positions ??= arange(past, past + t, dtype: ScalarType.Int64, device: idx.device).unsqueeze(0);
        if (mask is null && past > 0 && t > 1) mask = Data.AttentionMasks.AfterCache(past, t, idx.device);
        return (positions, mask);
    }

    /// <summary>A cache over given tensors, (B, n_head, capacity, head_size) per layer, whose first <paramref name="length"/> positions are filled; it owns them.</summary>
    public KvCache(Tensor[] k, Tensor[] v, int length)
    {
        if (k.Length != v.Length || k.Length == 0) throw new ArgumentException("one key and one value tensor per layer");
        _k = k;
        _v = v;
        Capacity = (int)k[0].shape[2];
        Length = length;
    }

    public int Layers => _k.Length;
    /// <summary>The whole key / value buffer of a layer, (B, n_head, capacity, head_size).</summary>
    public Tensor Keys(int layer) => _k[layer];
    public Tensor Values(int layer) => _v[layer];

    /// <summary>Writes this step's keys/values for layer <paramref name="layer"/> and returns views over everything cached so far.</summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        int t = (int)k.shape[2];
        if (Length + t > Capacity) throw new InvalidOperationException($"KV cache full ({Capacity} positions)");
        _k[layer].narrow(2, Length, t).copy_(k);
        _v[layer].narrow(2, Length, t).copy_(v);
        return (_k[layer].narrow(2, 0, Length + t), _v[layer].narrow(2, 0, Length + t));
    }

    /// <summary>Called once per forward pass, after every layer appended <paramref name="t"/> positions.</summary>
    public void Advance(int t) => Length += t;

    /// <summary>Forgets every position (the tensors stay allocated), e.g. before prefilling a slid window.</summary>
    public void Reset() => Length = 0;

    public void Dispose()
    {
        foreach (var t in _k) t.Dispose();
        foreach (var t in _v) t.Dispose();
    }
}
