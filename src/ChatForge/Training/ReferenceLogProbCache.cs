using System.Security.Cryptography;
using System.Text;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>
/// DPO's reference log-probabilities log π_ref(y|x) of every chosen and rejected response, computed once
/// and cached in a safetensors file whose metadata keys them by the reference model's weights and the
/// encoded pairs: a cache made with another model or other pairs (even as many) is recomputed, and the
/// log says why.
/// </summary>
public static class ReferenceLogProbCache
{
    const string ModelKey = "reference_model_sha256", PairsKey = "pairs_sha256";
    /// <summary>Sequences scored per forward pass.</summary>
    const int Batch = 64;

    public static (float[] Chosen, float[] Rejected) Get(string path, CausalLM reference, ITokenizer tok,
        IReadOnlyList<(Segment Chosen, Segment Rejected)> pairs, Action<string>? log)
    {
        var key = new Dictionary<string, string> { [ModelKey] = ModelSha256(reference), [PairsKey] = PairsSha256(pairs) };
        if (File.Exists(path))
        {
            var cached = SafeTensors.Load(path, out var meta);
            try
            {
                string? stale = !meta.ContainsKey(ModelKey) || !meta.ContainsKey(PairsKey) ? "it has no key"
                    : meta[ModelKey] != key[ModelKey] ? "it was computed with another reference model"
                    : meta[PairsKey] != key[PairsKey] || cached["chosen"].shape[0] != pairs.Count ? "it was computed for other pairs"
                    : null;
                if (stale is null) return (cached["chosen"].data<float>().ToArray(), cached["rejected"].data<float>().ToArray());
                log?.Invoke($"{path}: {stale}; recomputing the reference log-probabilities");
            }
            finally { foreach (var t in cached.Values) t.Dispose(); }
        }
        var (chosen, rejected) = Compute(reference, tok, pairs, log);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["chosen"] = tensor(chosen), ["rejected"] = tensor(rejected) }, key);
        return (chosen, rejected);
    }

    /// <summary>A response of a K-wise ranking sits in K−1 pairs: each distinct sequence is scored once.</summary>
    static (float[] Chosen, float[] Rejected) Compute(CausalLM reference, ITokenizer tok, IReadOnlyList<(Segment Chosen, Segment Rejected)> pairs, Action<string>? log)
    {
        var slotOf = new Dictionary<string, int>();
        var distinct = new List<Segment>();
        int Slot(Segment s)
        {
            var k = Array.IndexOf(s.Train, true) + ":" + string.Join(',', s.Ids);
            if (!slotOf.TryGetValue(k, out int slot)) { slot = distinct.Count; slotOf[k] = slot; distinct.Add(s); }
            return slot;
        }
        var slots = pairs.Select(p => (C: Slot(p.Chosen), R: Slot(p.Rejected))).ToList();
        log?.Invoke($"reference log-probabilities of {pairs.Count} pairs ({distinct.Count} distinct sequences)");
        var logps = new float[distinct.Count];
        using (no_grad())
            for (int i = 0; i < distinct.Count; i += Batch)
            {
                using var scope = NewDisposeScope();
                var chunk = distinct.GetRange(i, Math.Min(Batch, distinct.Count - i));
                LogProbs.SequenceLogProbs(reference, chunk, tok.EosId()).cpu().data<float>().ToArray().CopyTo(logps, i);
            }
        return (slots.Select(s => logps[s.C]).ToArray(), slots.Select(s => logps[s.R]).ToArray());
    }


    /// <summary>
    /// SHA-256 over the model's configuration and every tensor of its state (name, dtype, shape, bytes):
    /// part of the key of the cached reference log-probabilities.
    /// </summary>
    public static string ModelSha256(CausalLM model)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { h.AppendData(Encoding.UTF8.GetBytes(s)); h.AppendData(new byte[] { 0 }); }
        Text(model.HfConfig().ToJsonString());
        foreach (var (name, t) in model.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            var cpu = t.detach().cpu().contiguous();
            Text($"{name} {cpu.dtype} {string.Join(',', cpu.shape)}");
            if (cpu.NumberOfElements > 0) h.AppendData(cpu.bytes);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>SHA-256 over the encoded pairs (token ids and response starts, in order): the other part of the key.</summary>
    public static string PairsSha256(IEnumerable<(Segment Chosen, Segment Rejected)> pairs)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Sequence(Segment s)
        {
            h.AppendData(BitConverter.GetBytes(s.Ids.Length));
            h.AppendData(BitConverter.GetBytes(Array.IndexOf(s.Train, true)));
            h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.Ids.AsSpan()));
        }
        foreach (var (c, r) in pairs) { Sequence(c); Sequence(r); }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }
}
