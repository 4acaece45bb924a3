using System.Text;
using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Generation;

/// <summary>
/// Autoregressive sampling from a <see cref="CausalLM"/> (either family): batched prompts (left-padded, with an attention
/// mask and position ids so padding changes nothing), a KV cache (or full recomputation, to compare),
/// greedy / temperature / top-k / top-p, stop on EOS, stop tokens or stop strings, and a seed. Past the
/// context the window slides (nanoGPT's crop to the last n_positions tokens), the same for every caller.
/// </summary>
public sealed partial class TextGenerator
{
    readonly CausalLM _model;
    readonly ITokenizer _tok;
    readonly Device _device;

    public TextGenerator(CausalLM model, ITokenizer tokenizer)
    {
        _model = model;
        _tok = tokenizer;
        _device = model.TokenEmbedding.device;
    }

    public Completion Complete(string prompt, SamplingOptions o, bool useCache = true) =>
        Generate(new[] { _tok.Encode(prompt) }, o, useCache)[0];

    /// <summary>
    /// Generates a completion for every prompt, in one batch. Each step sees the last n_positions tokens
    /// of its sequence, as nanoGPT's generate crops them, so a completion may be longer than the context;
    /// only a prompt longer than the context loses its beginning (<see cref="Completion.PromptTruncated"/>).
    /// </summary>
    public IReadOnlyList<Completion> Generate(IReadOnlyList<int[]> prompts, SamplingOptions o, bool useCache = true, Action<int, int>? onToken = null)
    {
        o.Validate();
        if (prompts.Count == 0) return Array.Empty<Completion>();
        int ctx = _model.Context;
        // The first step sees at most the context, so tokens before it can never matter.
        var trimmed = prompts.Select(p => p.Length == 0 ? new[] { _tok.EosId() } : p.Length > ctx ? p[^ctx..] : p).ToArray();
        var stopIds = new HashSet<int>(o.StopTokenIds);
        if (!o.IgnoreEos) foreach (var id in _tok.Specials.Values) stopIds.Add(id);
        var rows = trimmed.Select(_ => new Row()).ToArray();

        bool wasTraining = _model.training;
        _model.eval();
        try
        {
            using var inference = inference_mode();
            using var outer = NewDisposeScope();
            using var gen = o.Seed is { } seed ? new torch.Generator((ulong)seed, _device) : null;
            using var batch = new Batch(_model, trimmed, o.MaxNewTokens, _tok.EosId(), useCache);
            for (int step = 0; step < o.MaxNewTokens; step++)
            {
                using var scope = NewDisposeScope();
                var next = Sample(batch.NextLogits(), o, gen);                 // (B)
                var nextIds = next.cpu().data<long>().ToArray();
                for (int r = 0; r < rows.Length; r++)
                    if (rows[r].Finish is null && Accept(rows[r], (int)nextIds[r], stopIds, o.StopStrings))
                        onToken?.Invoke(r, (int)nextIds[r]);
                if (rows.All(row => row.Finish is not null)) break;
                batch.Append(next);
            }
        }
        finally
        {
            if (wasTraining) _model.train();
        }

        return rows.Select((row, r) =>
        {
            if (row.Finish != "stop" || o.StopStrings.Count == 0) Flush(row.Text, row.Decoder);
            return new Completion(row.Tokens.ToArray(), row.Text.ToString(), row.Finish ?? "length", trimmed[r].Length, prompts[r].Length > ctx, row.StopToken);
        }).ToList();
    }

    /// <summary>One row's completion so far, and why it ended (null while it runs).</summary>
    sealed class Row
    {
        public readonly List<int> Tokens = new();
        public readonly StringBuilder Text = new();
        public readonly Decoder Decoder = Encoding.UTF8.GetDecoder();
        public string? Finish;
        public int? StopToken;
        /// <summary>Characters of <see cref="Text"/> already handed to the caller (rows with their own options).</summary>
        public int Emitted;
        /// <summary>Whether the row's text is complete (its decoder flushed).</summary>
        public bool Closed;
        public List<TokenLogprob>? Logprobs;
        public int LogprobsEmitted;
    }

    /// <summary>
    /// Generates every row in one batch, each with its own options: its sampling seed, temperature, top-k/top-p, stops and
    /// token limit (a row that ends leaves the batch). Text streams to each row's <see cref="RowRequest.OnText"/>; a
    /// cancelled row ends at the next step ("cancelled"). A row with a seed samples the same tokens whatever the other
    /// rows of its batch. This is <see cref="ContinuousBatch"/> with every row added at the start.
    /// </summary>
    public IReadOnlyList<Completion> GenerateRows(IReadOnlyList<RowRequest> requests)
    {
        foreach (var q in requests) q.Options.Validate();
        var results = new Completion[requests.Count];
        bool wasTraining = _model.training;
        try
        {
            using var batch = new ContinuousBatch(this);
            for (int i = 0; i < requests.Count; i++)
            {
                int at = i;
                batch.Add(requests[i], c => results[at] = c);
            }
            while (batch.Count > 0) batch.Step();
        }
        finally
        {
            if (wasTraining) _model.train();
        }
        return results;
    }

    /// <summary>
    /// Hands a row's new text to its caller: everything but what could still become a stop string, or (final) all of it,
    /// after flushing the decoder.
    /// </summary>
    void Emit(Row row, RowRequest q, bool final)
    {
        if (row.Closed) return;
        if (final)
        {
            if (row.Finish != "stop" || q.Options.StopStrings.Count == 0) Flush(row.Text, row.Decoder);
            row.Closed = true;
        }
        int hold = final ? 0 : Math.Max(0, q.Options.StopStrings.Select(x => x.Length - 1).DefaultIfEmpty(0).Max());
        int upTo = Math.Max(row.Emitted, row.Text.Length - hold);
        if (upTo > row.Emitted && upTo < row.Text.Length && char.IsHighSurrogate(row.Text[upTo - 1])) upTo--;   // never half a character
        // The log-probabilities go out with the text they came with (at the end, those of a stop string's tokens too).
        if (q.OnLogprobs is { } lp && row.Logprobs is { } all && all.Count > row.LogprobsEmitted && (upTo > row.Emitted || final))
        {
            lp(all.GetRange(row.LogprobsEmitted, all.Count - row.LogprobsEmitted));
            row.LogprobsEmitted = all.Count;
        }
        if (q.OnText is { } on && upTo > row.Emitted) on(row.Text.ToString(row.Emitted, upTo - row.Emitted));
        row.Emitted = upTo;
    }

    /// <summary>The chosen token's log-probability under <paramref name="logits"/> (V), and the <paramref name="top"/> most likely tokens'.</summary>
    TokenLogprob Logprob(Tensor logits, int id, int top)
    {
        var lp = logits.to(ScalarType.Float32).log_softmax(-1);
        var alternatives = new List<(int, string, double)>();
        if (top > 0)
        {
            var (vals, idx) = lp.topk(Math.Min(top, (int)lp.shape[0]));
            var v = vals.data<float>().ToArray();
            var ix = idx.data<long>().ToArray();
            for (int i = 0; i < v.Length; i++) alternatives.Add(((int)ix[i], TokenText((int)ix[i]), v[i]));
        }
        return new TokenLogprob(id, TokenText(id), lp[id].item<float>(), alternatives);
    }

    /// <summary>A token's text on its own (a token that ends inside a multi-byte character shows as U+FFFD).</summary>
    string TokenText(int id)
    {
        var sb = new StringBuilder();
        var decoder = Encoding.UTF8.GetDecoder();
        AppendText(sb, decoder, id);
        Flush(sb, decoder);
        return sb.ToString();
    }

    /// <summary>
    /// Takes a row's next token: a stop token ends the row and is not emitted; any other token joins the
    /// completion, and a stop string now in its text ends the row with the text cut before it.
    /// Returns whether the token was emitted.
    /// </summary>
    bool Accept(Row row, int id, HashSet<int> stopIds, IReadOnlyList<string> stopStrings)
    {
        if (stopIds.Contains(id))
        {
            row.Finish = id == _tok.EosId() ? "eos" : "stop";
            row.StopToken = id;
            return false;
        }
        row.Tokens.Add(id);
        AppendText(row.Text, row.Decoder, id);
        if (stopStrings.Count > 0)
        {
            var s = row.Text.ToString();
            foreach (var stop in stopStrings)
            {
                int at = s.IndexOf(stop, StringComparison.Ordinal);
                if (at < 0) continue;
                row.Text.Length = at;
                row.Finish = "stop";
                break;
            }
        }
        return true;
    }

    /// <summary>
    /// The sequences being decoded: left-padded into a buffer with room for the new tokens (ids, and a mask
    /// of the real tokens: the new positions are real), and the KV cache of the current window.
    /// </summary>
    sealed class Batch : IDisposable
    {
        readonly CausalLM _model;
        readonly int _ctx;
        readonly Tensor _ids, _real;    // (B, L+N)
        readonly Tensor _positions;     // (B, L+N): counted from each row's first real token
        readonly int _padColumns;       // columns 0 … _padColumns−1 hold some row's left padding
        readonly KvCache? _cache;
        int _cacheStart;                // the column the cache's first position holds

        /// <summary>Columns filled so far (the prompt, then one per step).</summary>
        public int Length { get; private set; }

        public Batch(CausalLM model, int[][] prompts, int maxNew, int padId, bool useCache)
        {
            _model = model;
            _ctx = model.Context;
            int b = prompts.Length, promptLen = prompts.Max(p => p.Length), total = promptLen + maxNew;
            var ids = new long[b * total];
            var real = new bool[b * total];
            for (int r = 0; r < b; r++)
            {
                int pad = promptLen - prompts[r].Length;
                for (int i = 0; i < total; i++)
                {
                    ids[r * total + i] = i < pad ? padId : i < promptLen ? prompts[r][i - pad] : 0;
                    real[r * total + i] = i >= pad;
                }
            }
            var device = model.TokenEmbedding.device;
            _ids = tensor(ids, new long[] { b, total }, device: device).DetachFromDisposeScope();
            _real = tensor(real, new long[] { b, total }, device: device).DetachFromDisposeScope();
            _positions = Positions(_real).DetachFromDisposeScope();
            _padColumns = promptLen - prompts.Min(p => p.Length);
            _cache = useCache ? model.NewCache(b, Math.Min(total, _ctx), device) : null;
            Length = promptLen;
        }

        /// <summary>
        /// Logits (B, V) for the token after the last filled column, seeing the last n_positions columns
        /// (nanoGPT's crop). With a cache, one new position is decoded while the window only grows; when it
        /// slides, every position changes (absolute position embeddings), so the window is prefilled again.
        /// </summary>
        public Tensor NextLogits()
        {
            int start = Math.Max(0, Length - _ctx);
            var real = _real.narrow(1, start, Length - start);
            var positions = start == 0 ? _positions.narrow(1, 0, Length) : Positions(real);  // a slid window counts afresh
            bool padded = start < _padColumns;
            Tensor hidden;
            if (_cache is not null && _cache.Length > 0 && start == _cacheStart)
            {
                // Decode: one new token per row; it may attend to every cached real position.
                var mask = padded ? real.unsqueeze(1).unsqueeze(1) : null;                // (B, 1, 1, Lk)
                hidden = _model.Hidden(_ids.narrow(1, Length - 1, 1), positions.narrow(1, Length - 1 - start, 1), mask, _cache);
            }
            else
            {
                // Prefill the window (every step without a cache: full recomputation).
                _cache?.Reset();
                _cacheStart = start;
                hidden = _model.Hidden(_ids.narrow(1, start, Length - start), positions, padded ? AttentionMasks.PaddedCausal(real) : null, _cache);
            }
            return _model.Logits(hidden.select(1, -1));
        }

        static Tensor Positions(Tensor real) => (real.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0);

        /// <summary>Writes the sampled tokens (B) into the next column.</summary>
        public void Append(Tensor next)
        {
            _ids.narrow(1, Length, 1).copy_(next.unsqueeze(1));
            Length++;
        }

        public void Dispose()
        {
            _cache?.Dispose();
            _ids.Dispose();
            _real.Dispose();
            _positions.Dispose();
        }
    }

    /// <summary>
    /// Streams the completion of one prompt as text pieces, as tokens are generated: the pieces <see cref="GenerateRows"/>
    /// hands out (so text that might begin a stop string is held back, and the pieces join into the completion's text).
    /// Decoding runs on the caller's thread, a step per piece; leaving the enumeration early stops it.
    /// </summary>
    public IEnumerable<string> Stream(int[] prompt, SamplingOptions o)
    {
        var pieces = new Queue<string>();
        bool wasTraining = _model.training;
        try
        {
            using var batch = new ContinuousBatch(this);
            batch.Add(new RowRequest(prompt, o, pieces.Enqueue), _ => { });
            while (true)
            {
                while (pieces.Count > 0) yield return pieces.Dequeue();
                if (batch.Count == 0) break;
                batch.Step();
            }
        }
        finally
        {
            if (wasTraining) _model.train();
        }
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
