using System.Text;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Generation;

/// <summary>
/// Autoregressive sampling from a <see cref="Gpt"/>: batched prompts (left-padded, with an attention
/// mask and position ids so padding changes nothing), a KV cache (or full recomputation, to compare),
/// greedy / temperature / top-k / top-p, stop on EOS, stop tokens or stop strings, and a seed.
/// </summary>
public sealed class TextGenerator
{
    readonly Gpt _model;
    readonly ITokenizer _tok;
    readonly Device _device;

    public TextGenerator(Gpt model, ITokenizer tokenizer)
    {
        _model = model;
        _tok = tokenizer;
        _device = model.TokenEmbedding.device;
    }

    public Completion Complete(string prompt, SamplingOptions o, bool useCache = true) =>
        Generate(new[] { _tok.Encode(prompt) }, o, useCache)[0];

    /// <summary>Generates a completion for every prompt, in one batch.</summary>
    public IReadOnlyList<Completion> Generate(IReadOnlyList<int[]> prompts, SamplingOptions o, bool useCache = true, Action<int, int>? onToken = null)
    {
        o.Validate();
        if (prompts.Count == 0) return Array.Empty<Completion>();
        int ctx = _model.Config.NPositions;
        int maxNew = Math.Min(o.MaxNewTokens, ctx - 1);
        int keep = ctx - maxNew; // room for the prompt
        var trimmed = prompts.Select(p => p.Length == 0 ? new[] { _tok.EosId() } : p.Length > keep ? p[^keep..] : p).ToArray();
        bool[] truncated = prompts.Select(p => p.Length > keep).ToArray();
        int b = trimmed.Length, promptLen = trimmed.Max(p => p.Length);
        var stopIds = new HashSet<int>(o.StopTokenIds);
        if (!o.IgnoreEos) foreach (var id in _tok.Specials.Values) stopIds.Add(id);

        var outTokens = Enumerable.Range(0, b).Select(_ => new List<int>()).ToArray();
        var finish = new string?[b];
        var stopToken = new int?[b];
        var texts = Enumerable.Range(0, b).Select(_ => new StringBuilder()).ToArray();
        var decoders = Enumerable.Range(0, b).Select(_ => Encoding.UTF8.GetDecoder()).ToArray();
        using var gen = o.Seed is { } seed ? new torch.Generator((ulong)seed, _device) : null;

        bool wasTraining = _model.training;
        _model.eval();
        using var inference = inference_mode();
        using var cache = useCache ? new KvCache(_model.Config, b, _device) : null;
        using var outer = NewDisposeScope();

        // Left-pad into a buffer that also has room for the new tokens: ids (B, L+N), a key mask
        // (true = real token; the new positions are real) and positions counted from each row's first real token.
        int total = promptLen + maxNew;
        var ids = new long[b * total];
        var real = new bool[b * total];
        bool anyPad = false;
        for (int r = 0; r < b; r++)
        {
            int pad = promptLen - trimmed[r].Length;
            anyPad |= pad > 0;
            for (int i = 0; i < total; i++)
            {
                ids[r * total + i] = i < pad ? _tok.EosId() : i < promptLen ? trimmed[r][i - pad] : 0;
                real[r * total + i] = i >= pad;
            }
        }
        var seq = tensor(ids, new long[] { b, total }, device: _device);
        var keyMask = tensor(real, new long[] { b, total }, device: _device);
        var allPositions = (keyMask.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0);   // (B, L+N)

        int len = promptLen;
        for (int step = 0; step < maxNew; step++)
        {
            using var scope = NewDisposeScope();
            Tensor hidden;
            if (cache is null || step == 0)
            {
                // The whole sequence so far (prefill, or recomputation without a cache).
                var km = keyMask.narrow(1, 0, len);
                hidden = _model.Hidden(seq.narrow(1, 0, len), allPositions.narrow(1, 0, len), anyPad ? PaddedCausalMask(km) : null, cache);
            }
            else
            {
                // One new token per row; it may attend to every cached real position.
                var mask = anyPad ? keyMask.narrow(1, 0, len).unsqueeze(1).unsqueeze(1) : null; // (B, 1, 1, Lk)
                hidden = _model.Hidden(seq.narrow(1, len - 1, 1), allPositions.narrow(1, len - 1, 1), mask, cache);
            }
            var logits = _model.Logits(hidden.select(1, -1));
            var next = Sample(logits, o, gen);                                  // (B)
            var nextIds = next.cpu().data<long>().ToArray();
            for (int r = 0; r < b; r++)
            {
                if (finish[r] is not null) continue;
                int id = (int)nextIds[r];
                if (stopIds.Contains(id)) { finish[r] = id == _tok.EosId() ? "eos" : "stop"; stopToken[r] = id; continue; }
                outTokens[r].Add(id);
                onToken?.Invoke(r, id);
                AppendText(texts[r], decoders[r], id);
                if (o.StopStrings.Count > 0)
                {
                    var s = texts[r].ToString();
                    foreach (var stop in o.StopStrings)
                    {
                        int at = s.IndexOf(stop, StringComparison.Ordinal);
                        if (at < 0) continue;
                        texts[r].Length = at;
                        finish[r] = "stop";
                        break;
                    }
                }
            }
            if (finish.All(f => f is not null)) break;
            seq.narrow(1, len, 1).copy_(next.unsqueeze(1));
            len++;
        }
        if (wasTraining) _model.train();

        var result = new Completion[b];
        for (int r = 0; r < b; r++)
        {
            if (finish[r] != "stop" || o.StopStrings.Count == 0) Flush(texts[r], decoders[r]);
            var text = texts[r].ToString();
            result[r] = new Completion(outTokens[r].ToArray(), text, finish[r] ?? "length", trimmed[r].Length, truncated[r], stopToken[r]);
        }
        return result;
    }

    /// <summary>Streams the completion of one prompt as text pieces, as tokens are generated.</summary>
    public IEnumerable<string> Stream(int[] prompt, SamplingOptions o)
    {
        var pieces = new System.Collections.Concurrent.BlockingCollection<string>();
        var decoder = Encoding.UTF8.GetDecoder();
        var task = Task.Run(() =>
        {
            try
            {
                Generate(new[] { prompt }, o, true, (_, id) =>
                {
                    var sb = new StringBuilder();
                    AppendText(sb, decoder, id);
                    if (sb.Length > 0) pieces.Add(sb.ToString());
                });
            }
            finally { pieces.CompleteAdding(); }
        });
        foreach (var p in pieces.GetConsumingEnumerable()) yield return p;
        task.Wait();
    }

    void AppendText(StringBuilder sb, Decoder decoder, int id)
    {
        var bytes = _tok.TokenBytes(id);
        if (bytes.Length == 0)
        {
            var special = _tok.Specials.FirstOrDefault(p => p.Value == id).Key;
            if (special is not null) sb.Append(special);
            return;
        }
        var chars = new char[Encoding.UTF8.GetMaxCharCount(bytes.Length)];
        int n = decoder.GetChars(bytes, chars, flush: false);
        sb.Append(chars, 0, n);
    }

    static void Flush(StringBuilder sb, Decoder decoder)
    {
        var chars = new char[8];
        int n = decoder.GetChars(Array.Empty<byte>(), chars, flush: true);
        sb.Append(chars, 0, n);
    }

    /// <summary>(B, 1, L, L): causal and not padding; each position may always see itself, so no row is empty.</summary>
    public static Tensor PaddedCausalMask(Tensor keyMask)
    {
        long l = keyMask.shape[1];
        var causal = ones(l, l, dtype: ScalarType.Bool, device: keyMask.device).tril();
        var eye_ = eye(l, dtype: ScalarType.Bool, device: keyMask.device);
        return (causal.unsqueeze(0) & keyMask.unsqueeze(1)).logical_or(eye_.unsqueeze(0)).unsqueeze(1);
    }

    /// <summary>Picks the next token of each row from the last position's logits (B, V).</summary>
    public static Tensor Sample(Tensor logits, SamplingOptions o, torch.Generator? gen)
    {
        if (o.Temperature == 0) return logits.argmax(-1);
        logits = logits / o.Temperature;
        if (o.TopK > 0 && o.TopK < logits.shape[^1])
        {
            var (vals, _) = logits.topk(o.TopK);
            var kth = vals.narrow(-1, o.TopK - 1, 1);
            logits = logits.masked_fill(logits < kth, double.NegativeInfinity);
        }
        var probs = logits.softmax(-1);
        if (o.TopP < 1.0)
        {
            var (sorted, idx) = probs.sort(-1, descending: true);
            var cum = sorted.cumsum(-1);
            // Drop a token when the tokens before it already reach p (the first token always stays).
            var drop = (cum - sorted) >= o.TopP;
            sorted = sorted.masked_fill(drop, 0);
            var pick = sorted.multinomial(1, generator: gen);
            return idx.gather(-1, pick).squeeze(-1);
        }
        return probs.multinomial(1, generator: gen).squeeze(-1);
    }
}
