using ChatForge.Modeling;
using ChatForge.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace ChatForge.Generation;

public sealed partial class TextGenerator
{
    /// <summary>
    /// Rows that join and leave between decoding steps (iteration-level, "continuous" batching, as Orca and vLLM do): a
    /// row added while others run is prefilled alone, its keys and values are spliced into the shared KV cache
    /// (left-padded to the batch's columns, with an attention mask of its real positions), and it is decoded with the
    /// others from the next step on; a row that ends leaves at once, so a long answer never holds up a short one.
    /// Each row sees exactly what it would alone: its own positions counted from its first token, and past the context
    /// the last n_positions tokens of its own sequence (recomputed every step, as <see cref="Generate"/> slides).
    /// Not thread-safe: one thread adds and steps (the <c>GenerationQueue</c>'s worker). The shared cache holds at most
    /// <see cref="MaxCachePositions"/> columns, so a long-context checkpoint (Qwen2.5's 32,768) does not preallocate
    /// gigabytes; a row longer than that is recomputed each step over its context, as past the context.
    /// </summary>
    public sealed class ContinuousBatch : IDisposable
    {
        /// <summary>Columns of the shared KV cache at most (per row: layers × 2 × KV heads × head size × 4 bytes each).</summary>
        public const int MaxCachePositions = 2048;

        readonly TextGenerator _g;
        readonly CausalLM _model;
        readonly int _ctx;                       // the model's context: the window a sliding row sees
        readonly int _width;                     // the shared cache's columns: the context, at most MaxCachePositions
        readonly List<Live> _cached = new();     // rows in the KV cache, in its batch order
        readonly List<Live> _sliding = new();    // rows longer than the cache: a full window per step
        KvCache? _cache;
        Tensor? _real;                           // (B, width) bool: which cache columns hold a row's real tokens
        int _length;                             // cache columns in use (shared by the cached rows)

        sealed class Live(RowRequest q, Action<Completion> done, HashSet<int> stopIds, torch.Generator? gen, int promptLength, bool truncated)
        {
            public readonly RowRequest Q = q;
            public readonly Action<Completion> Done = done;
            public readonly HashSet<int> StopIds = stopIds;
            public readonly torch.Generator? Gen = gen;
            public readonly int PromptLength = promptLength;
            public readonly bool Truncated = truncated;
            public readonly Row Row = new();
            public readonly List<int> Seq = new();   // the (trimmed) prompt, then every sampled token
        }

        public ContinuousBatch(TextGenerator generator)
        {
            _g = generator;
            _model = generator._model;
            _ctx = _model.Context;
            _width = Math.Min(_ctx, MaxCachePositions);
        }

        /// <summary>Rows running.</summary>
        public int Count => _cached.Count + _sliding.Count;

        /// <summary>
        /// Adds a row: prefills its prompt and samples its first token now; <paramref name="done"/> gets its completion when
        /// it ends (possibly at once).
        /// </summary>
        public void Add(RowRequest q, Action<Completion> done)
        {
            q.Options.Validate();
            var prompt = q.Prompt.Length == 0 ? new[] { _g._tok.EosId() } : q.Prompt.Length > _ctx ? q.Prompt[^_ctx..] : q.Prompt;
            var stopIds = new HashSet<int>(q.Options.StopTokenIds);
            if (!q.Options.IgnoreEos) foreach (var id in _g._tok.Specials.Values) stopIds.Add(id);
            var live = new Live(q, done, stopIds, q.Options.Seed is { } seed ? new torch.Generator((ulong)seed, _g._device) : null, prompt.Length, q.Prompt.Length > _ctx);
            if (q.TopLogprobs >= 0) live.Row.Logprobs = new();
            live.Seq.AddRange(prompt);
            if (Ended(live, 0)) { Finish(live); return; }

            _model.eval();
            using var inference = inference_mode();
            using var scope = NewDisposeScope();
            using var alone = _model.NewCache(1, prompt.Length, _g._device);
            var ids = tensor(prompt.Select(x => (long)x).ToArray(), device: _g._device).unsqueeze(0);
            var logits = _model.Logits(_model.Hidden(ids, null, null, alone).select(1, -1));   // (1, V)
            Take(live, logits);
            if (live.Row.Finish is not null) { Finish(live); return; }
            if (live.Seq.Count > _width) _sliding.Add(live);   // too long for the shared cache
            else Splice(live, alone, prompt.Length);
        }

        /// <summary>One decoding step for every running row; rows that end are completed and leave.</summary>
        public void Step()
        {
            if (Count == 0) return;
            _model.eval();
            using var inference = inference_mode();
            using var scope = NewDisposeScope();
            // A cached row whose next position would pass the cache's width slides from now on.
            foreach (var r in _cached.Where(r => r.Seq.Count > _width).ToList()) { Remove(r); _sliding.Add(r); }
            if (_cached.Count > 0)
            {
                if (_length + 1 > _width) Compact();
                int b = _cached.Count;
                var last = tensor(_cached.Select(r => (long)r.Seq[^1]).ToArray(), device: _g._device).unsqueeze(1);          // (B, 1)
                var positions = tensor(_cached.Select(r => (long)(r.Seq.Count - 1)).ToArray(), device: _g._device).unsqueeze(1);
                _real!.narrow(1, _length, 1).fill_(true);
                var mask = _real.narrow(1, 0, _length + 1).unsqueeze(1).unsqueeze(1);                                       // (B, 1, 1, L+1)
                var logits = _model.Logits(_model.Hidden(last, positions, mask, _cache).select(1, -1));                      // (B, V)
                _length++;
                for (int i = 0; i < b; i++) Take(_cached[i], logits.narrow(0, i, 1));
            }
            foreach (var r in _sliding)
            {
                var window = tensor(r.Seq.Skip(Math.Max(0, r.Seq.Count - _ctx)).Select(x => (long)x).ToArray(), device: _g._device).unsqueeze(0);
                Take(r, _model.Logits(_model.Hidden(window).select(1, -1)));
            }
            foreach (var r in _cached.Where(r => r.Row.Finish is not null).ToList()) { Remove(r); Finish(r); }
            foreach (var r in _sliding.Where(r => r.Row.Finish is not null).ToList()) { _sliding.Remove(r); Finish(r); }
        }

        /// <summary>Ends a row before sampling its next token if it was cancelled or reached its limit; returns whether it ended.</summary>
        static bool Ended(Live r, int generated)
        {
            if (r.Row.Finish is not null) return true;
            if (r.Q.Cancel.IsCancellationRequested) r.Row.Finish = "cancelled";
            else if (generated >= r.Q.Options.MaxNewTokens) r.Row.Finish = "length";
            return r.Row.Finish is not null;
        }

        /// <summary>Samples a row's next token from its logits (1, V), unless it ends first; the token joins its sequence.</summary>
        void Take(Live r, Tensor logits)
        {
            if (Ended(r, r.Row.Tokens.Count)) return;
            int id = (int)Sample(logits, r.Q.Options, r.Gen).item<long>();
            if (r.Row.Logprobs is not null && !r.StopIds.Contains(id)) r.Row.Logprobs.Add(_g.Logprob(logits[0], id, r.Q.TopLogprobs));
            r.Seq.Add(id);
            _g.Accept(r.Row, id, r.StopIds, r.Q.Options.StopStrings);
            _g.Emit(r.Row, r.Q, r.Row.Finish is not null);
            if (r.Row.Finish is null) Ended(r, r.Row.Tokens.Count);   // its limit reached: ends now, not a step later
        }

        void Finish(Live r)
        {
            r.Row.Finish ??= "length";
            _g.Emit(r.Row, r.Q, final: true);
            r.Gen?.Dispose();
            r.Done(new Completion(r.Row.Tokens.ToArray(), r.Row.Text.ToString(), r.Row.Finish, r.PromptLength, r.Truncated, r.Row.StopToken,
                                  r.Row.Logprobs?.Take(r.Row.Tokens.Count).ToList()));
        }

        /// <summary>Adds a row prefilled alone (its keys and values in <paramref name="alone"/>, <paramref name="n"/> positions) to the shared cache.</summary>
        void Splice(Live r, KvCache alone, int n)
        {
            int b = _cached.Count, length = Math.Max(_length, n);
            var k = new Tensor[alone.Layers];
            var v = new Tensor[alone.Layers];
            for (int l = 0; l < alone.Layers; l++)
            {
                var shape = alone.Keys(l).shape;
                k[l] = zeros(new[] { b + 1, shape[1], _width, shape[3] }, device: _g._device).DetachFromDisposeScope();
                v[l] = zeros(new[] { b + 1, shape[1], _width, shape[3] }, device: _g._device).DetachFromDisposeScope();
                if (b > 0)
                {
                    k[l].narrow(0, 0, b).narrow(2, length - _length, _length).copy_(_cache!.Keys(l).narrow(2, 0, _length));
                    v[l].narrow(0, 0, b).narrow(2, length - _length, _length).copy_(_cache!.Values(l).narrow(2, 0, _length));
                }
                k[l].narrow(0, b, 1).narrow(2, length - n, n).copy_(alone.Keys(l).narrow(2, 0, n));
                v[l].narrow(0, b, 1).narrow(2, length - n, n).copy_(alone.Values(l).narrow(2, 0, n));
            }
            var real = zeros(new long[] { b + 1, _width }, dtype: ScalarType.Bool, device: _g._device).DetachFromDisposeScope();
            if (b > 0) real.narrow(0, 0, b).narrow(1, length - _length, _length).copy_(_real!.narrow(1, 0, _length));
            real.narrow(0, b, 1).narrow(1, length - n, n).fill_(true);
            Replace(new KvCache(k, v, length), real, length);
            _cached.Add(r);
        }

        /// <summary>Takes a row out of the shared cache, then drops the columns no remaining row uses.</summary>
        void Remove(Live r)
        {
            int at = _cached.IndexOf(r);
            _cached.RemoveAt(at);
            if (_cached.Count == 0) { Replace(null, null, 0); return; }
            var keep = tensor(Enumerable.Range(0, _cached.Count + 1).Where(i => i != at).Select(i => (long)i).ToArray(), device: _g._device);
            var k = Enumerable.Range(0, _cache!.Layers).Select(l => _cache.Keys(l).index_select(0, keep).DetachFromDisposeScope()).ToArray();
            var v = Enumerable.Range(0, _cache.Layers).Select(l => _cache.Values(l).index_select(0, keep).DetachFromDisposeScope()).ToArray();
            Replace(new KvCache(k, v, _length), _real!.index_select(0, keep).DetachFromDisposeScope(), _length);
            Compact();
        }

        /// <summary>Shifts the cache left past the columns that are padding for every row (rows left-padded to a longer one that has left).</summary>
        void Compact()
        {
            if (_cached.Count == 0 || _length == 0) return;
            int longest = _cached.Max(r => r.Seq.Count - 1);   // real positions cached per row: all but the last sampled token
            int drop = _length - longest;
            if (drop <= 0) return;
            for (int l = 0; l < _cache!.Layers; l++)
            {
                _cache.Keys(l).narrow(2, 0, longest).copy_(_cache.Keys(l).narrow(2, drop, longest).clone());
                _cache.Values(l).narrow(2, 0, longest).copy_(_cache.Values(l).narrow(2, drop, longest).clone());
            }
            _real!.narrow(1, 0, longest).copy_(_real.narrow(1, drop, longest).clone());
            _real.narrow(1, longest, _width - longest).fill_(false);
            _length = longest;
            var k = Enumerable.Range(0, _cache.Layers).Select(_cache.Keys).ToArray();
            var v = Enumerable.Range(0, _cache.Layers).Select(_cache.Values).ToArray();
            _cache = new KvCache(k, v, longest);   // the same tensors, a shorter filled length
        }

        void Replace(KvCache? cache, Tensor? real, int length)
        {
            _cache?.Dispose();
            _real?.Dispose();
            _cache = cache;
            _real = real;
            _length = length;
        }

        public void Dispose()
        {
            foreach (var r in _cached.Concat(_sliding)) r.Gen?.Dispose();
            Replace(null, null, 0);
        }
    }
}
