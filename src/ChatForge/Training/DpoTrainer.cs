using System.Security.Cryptography;
using System.Text;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>Direct Preference Optimization: the policy learns from preference pairs directly, no reward model.</summary>
public sealed record DpoConfig : RunOptions
{
    /// <summary>The SFT model: the policy starts here and the frozen reference is a copy.</summary>
    public string Model { get; init; } = "";
    /// <summary>Pairs or rankings JSONL (rankings are expanded to all their pairs); empty means: collect sentiment rankings from the SFT model.</summary>
    public List<string> Data { get; init; } = new();
    public CollectConfig Collect { get; init; } = new();
    /// <summary>β: higher means less deviation from the reference model.</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>"sigmoid" (the DPO paper's loss) or "ipo" (Azar et al. 2023, β as τ, on per-token mean log-probabilities as TRL).</summary>
    public string LossType { get; init; } = "sigmoid";
    /// <summary>ε of conservative DPO: the probability that a label is flipped (0: plain DPO).</summary>
    public double LabelSmoothing { get; init; }
    /// <summary>Fraction of prompts whose pairs are held out (split by prompt).</summary>
    public double ValFraction { get; init; } = 0.1;
    /// <summary>Reward model used only to report the RM score of the DPO policy (optional).</summary>
    public string? Reward { get; init; }
    public int EvalPrompts { get; init; } = 64;
    public int MaxNewTokens { get; init; } = 24;
    public OptimConfig Optim { get; init; } = new()
    {
        MaxSteps = 150, BatchSize = 16, LearningRate = 1e-4, MinLr = 1e-5, WarmupSteps = 10,
        EvalInterval = 50, CheckpointInterval = 50, LogInterval = 10, WeightDecay = 0.0,
    };

    public void Validate(string source)
    {
        if (string.IsNullOrEmpty(Model)) throw new ChatForgeException($"{source}: 'model' (the SFT model, --sft) is required");
        if (Beta <= 0) throw new ChatForgeException($"{source}: 'beta' = {Beta} is out of range (> 0)");
        if (LossType is not ("sigmoid" or "ipo")) throw new ChatForgeException($"{source}: 'loss_type' = {LossType} (sigmoid, ipo)");
        if (LabelSmoothing is < 0 or >= 0.5) throw new ChatForgeException($"{source}: 'label_smoothing' = {LabelSmoothing} is out of range (0 ≤ ε < 0.5)");
        if (ValFraction is <= 0 or >= 1) throw new ChatForgeException($"{source}: 'val_fraction' = {ValFraction} is out of range (0 < f < 1)");
        Collect.Validate(source);
        Optim.Validate(source);
    }

    public static DpoConfig Demo => new();
    public static DpoConfig Tiny => new()
    {
        Collect = new CollectConfig { Prompts = 16, K = 3, MaxNewTokens = 8 }, EvalPrompts = 4, MaxNewTokens = 8,
        Optim = new OptimConfig { MaxSteps = 8, BatchSize = 4, LearningRate = 1e-3, MinLr = 1e-4, WarmupSteps = 1, EvalInterval = 4, CheckpointInterval = 4, LogInterval = 2, WeightDecay = 0 },
    };

    public static DpoConfig Load(string? preset, string? file) => ConfigMerge.Load(preset, file, Demo, Tiny);
}

/// <summary>
/// DPO: for each pair, the sequence log-probabilities of chosen and rejected responses under the
/// policy (run without dropout) and under the frozen reference (computed once, before training, and
/// cached, keyed by the reference model and the pairs), and the loss of <see cref="Losses.Dpo"/> or
/// <see cref="Losses.Ipo"/>. Pairs are held out by prompt. Logs TRL's rewards/chosen, rewards/rejected, rewards/margins,
/// rewards/accuracies, and (at evaluations) the oracle score and KL to the reference of samples.
/// </summary>
public sealed class DpoTrainer : ITrainable
{
    sealed record EncodedPair(int[] Chosen, int ChosenStart, int[] Rejected, int RejectedStart, float RefChosen, float RefRejected)
    {
        public int ChosenTokens => ResponseTokens(Chosen, ChosenStart);
        public int RejectedTokens => ResponseTokens(Rejected, RejectedStart);
    }

    readonly DpoConfig _c;
    readonly Gpt _policy, _ref;
    readonly ITokenizer _tok;
    readonly List<EncodedPair> _train, _val;
    readonly EpochSampler _sampler;
    readonly List<string> _evalPrompts;
    readonly SentimentOracle? _oracle;
    readonly RewardModel? _rm;

    DpoTrainer(DpoConfig c, Gpt policy, Gpt reference, ITokenizer tok, List<EncodedPair> train, List<EncodedPair> val,
               List<string> evalPrompts, SentimentOracle? oracle, RewardModel? rm)
    {
        _c = c; _policy = policy; _ref = reference; _tok = tok; _train = train; _val = val;
        _evalPrompts = evalPrompts; _oracle = oracle; _rm = rm;
        _sampler = new EpochSampler(train.Count, c.Seed, c.Optim.BatchSize * c.Optim.GradAccum);
    }

    public nn.Module Model => _policy;
    public string BestMetric => "val_loss";
    public IEnumerable<(string, Parameter)> TrainableParameters() => _policy.named_parameters();

    /// <summary>Sequence log-probabilities (sum over response tokens) of a batch of (ids, responseStart), right-padded.</summary>
    public static Tensor SequenceLogps(Gpt model, IReadOnlyList<(int[] Ids, int Start)> seqs, int padId)
    {
        int t = seqs.Max(s => s.Ids.Length);
        int b = seqs.Count;
        var x = new long[b * t]; var y = new long[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++)
            {
                x[i * t + j] = j < seqs[i].Ids.Length ? seqs[i].Ids[j] : padId;
                // Position j predicts token j+1; score it when that token is part of the response.
                y[i * t + j] = j + 1 < seqs[i].Ids.Length && j + 1 >= seqs[i].Start ? seqs[i].Ids[j + 1] : CausalBatch.IgnoreIndex;
            }
        var device = model.TokenEmbedding.device;
        var logits = model.call(tensor(x, new long[] { b, t }, device: device));
        return LogProbs.TokenLogProbs(logits, tensor(y, new long[] { b, t }, device: device)).sum(1);
    }

    /// <summary>The number of response tokens <see cref="SequenceLogps"/> sums over (at least 1).</summary>
    public static int ResponseTokens(int[] ids, int start) => Math.Max(1, ids.Length - Math.Max(start, 1));

    (Tensor Loss, Dictionary<string, double> Metrics) Batch(IReadOnlyList<EncodedPair> pairs)
    {
        var seqs = pairs.Select(p => (p.Chosen, p.ChosenStart)).Concat(pairs.Select(p => (p.Rejected, p.RejectedStart))).ToList();
        var all = SequenceLogps(_policy, seqs, _tok.EosId());
        var pc = all.narrow(0, 0, pairs.Count);
        var pr = all.narrow(0, pairs.Count, pairs.Count);
        var device = all.device;
        var rc = tensor(pairs.Select(p => p.RefChosen).ToArray(), device: device);
        var rr = tensor(pairs.Select(p => p.RefRejected).ToArray(), device: device);
        Tensor loss;
        if (_c.LossType == "ipo")
        {
            var nc = tensor(pairs.Select(p => (float)p.ChosenTokens).ToArray(), device: device);
            var nr = tensor(pairs.Select(p => (float)p.RejectedTokens).ToArray(), device: device);
            loss = Losses.Ipo(pc, pr, rc, rr, nc, nr, _c.Beta);
            // As TRL: IPO's log-probabilities and implicit rewards are reported on the per-token means it compares.
            (pc, pr, rc, rr) = (pc / nc, pr / nr, rc / nc, rr / nr);
        }
        else loss = Losses.Dpo(pc, pr, rc, rr, _c.Beta, _c.LabelSmoothing);
        var (chosen, rejected) = Losses.DpoRewards(pc.detach(), pr.detach(), rc, rr, _c.Beta);
        return (loss, new Dictionary<string, double>
        {
            ["rewards/chosen"] = chosen.mean().item<float>(),
            ["rewards/rejected"] = rejected.mean().item<float>(),
            ["rewards/margins"] = (chosen - rejected).mean().item<float>(),
            ["rewards/accuracies"] = (chosen > rejected).to(ScalarType.Float32).mean().item<float>(),
            ["logps/chosen"] = pc.detach().mean().item<float>(),
            ["logps/rejected"] = pr.detach().mean().item<float>(),
        });
    }

    public MicroStepResult MicroStep(long step, int micro, int microBatches)
    {
        // The policy runs without dropout, as TRL's disable_dropout (its default): eval mode, gradients still on.
        // With dropout, π ≠ π_ref at step 0 and the implicit rewards β·(log π − log π_ref) carry dropout noise.
        _policy.eval();
        var pairs = _sampler.Indices(step, micro * _c.Optim.BatchSize, _c.Optim.BatchSize).Select(i => _train[i]).ToList();
        var (loss, m) = Batch(pairs);
        return new MicroStepResult(loss, pairs.Sum(p => (long)p.Chosen.Length + p.Rejected.Length), m);
    }

    public IReadOnlyDictionary<string, double> Evaluate()
    {
        double loss = 0; var sums = new Dictionary<string, double>(); int n = 0;
        for (int i = 0; i < _val.Count; i += _c.Optim.BatchSize)
        {
            using var scope = NewDisposeScope();
            var chunk = _val.Skip(i).Take(_c.Optim.BatchSize).ToList();
            var (l, m) = Batch(chunk);
            loss += l.item<float>() * chunk.Count;
            foreach (var (k, v) in m) sums[k] = sums.GetValueOrDefault(k) + v * chunk.Count;
            n += chunk.Count;
        }
        var result = sums.ToDictionary(kv => "val_" + kv.Key, kv => kv.Value / n);
        result["val_loss"] = loss / n;
        if (_evalPrompts.Count > 0)
            foreach (var (k, v) in PolicyEval.Run(_policy, _ref, _tok, _evalPrompts, _oracle, _rm, _c.MaxNewTokens, _c.Seed))
                result["eval_" + k] = v;
        return result;
    }

    public void SaveModel(string dir) => HfCheckpoint.Write(dir, _policy, _tok, configExtra: new System.Text.Json.Nodes.JsonObject
    {
        ["chatforge"] = new System.Text.Json.Nodes.JsonObject { ["stage"] = "dpo", ["base_model"] = _c.Model, ["beta"] = _c.Beta, ["loss_type"] = _c.LossType },
    });

    const string ModelKey = "reference_model_sha256", PairsKey = "pairs_sha256";

    /// <summary>
    /// SHA-256 over the model's configuration and every tensor of its state (name, dtype, shape, bytes):
    /// part of the key of the cached reference log-probabilities.
    /// </summary>
    public static string ModelSha256(Gpt model)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { h.AppendData(Encoding.UTF8.GetBytes(s)); h.AppendData(new byte[] { 0 }); }
        Text(model.Config.ToHuggingFace().ToJsonString());
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
    public static string PairsSha256(IEnumerable<(int[] Chosen, int ChosenStart, int[] Rejected, int RejectedStart)> pairs)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Ints(int[] ids, int start)
        {
            h.AppendData(BitConverter.GetBytes(ids.Length));
            h.AppendData(BitConverter.GetBytes(start));
            h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()));
        }
        foreach (var (c, cs, r, rs) in pairs) { Ints(c, cs); Ints(r, rs); }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>
    /// Train and held-out pairs, split by prompt (a hash of the prompt with the seed): all pairs of a prompt
    /// (a K-wise ranking gives C(K,2)) sit on one side, so the held-out loss is measured on unseen prompts.
    /// </summary>
    public static (List<PreferencePair> Train, List<PreferencePair> Val) Split(IReadOnlyList<PreferencePair> pairs, long seed, double valFraction)
    {
        bool Held(PreferencePair p) => HashSplit.Unit(seed, "dpo:" + p.Prompt) < valFraction;
        return (pairs.Where(p => !Held(p)).ToList(), pairs.Where(Held).ToList());
    }

    public static Dictionary<string, object?> Run(DpoConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("dpo config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume);

        var (policy, tok, _) = HfCheckpoint.Load(resuming ? run.ModelDir : c.Model, device);
        var (reference, _, _) = HfCheckpoint.Load(c.Model, device);
        foreach (var p in reference.parameters()) p.requires_grad = false;
        reference.eval();

        Corpora? corpora = Corpora.IsFetched(c.Cache) || c.Data.Count == 0 ? Corpora.OpenOrFetch(c.Cache, log) : null;
        List<Ranking> rankings;
        var collected = run.PathOf("rankings.jsonl");
        if (c.Data.Count > 0) rankings = c.Data.SelectMany(Preferences.ReadRankings).ToList();
        else if (File.Exists(collected)) rankings = Preferences.ReadRankings(collected);
        else
        {
            log?.Invoke($"collecting {c.Collect.Prompts} {c.Collect.Task} rankings of {c.Collect.K} responses from {c.Model}");
            (rankings, _) = PreferenceCollection.Collect(reference, tok, corpora!, c.Collect, log);
            Preferences.WriteRankings(collected, rankings);
        }
        var pairs = rankings.SelectMany(Preferences.ToPairs).ToList();
        var (train, val) = Split(pairs, c.Seed, c.ValFraction);
        if (train.Count == 0 || val.Count == 0)
            throw new ChatForgeException($"need preference pairs on both sides of the {c.ValFraction} split by prompt (got {pairs.Count} pairs of {pairs.Select(p => p.Prompt).Distinct().Count()} prompts)");

        // Reference log-probabilities: computed once, cached in the run directory.
        int ctx = policy.Config.NPositions;
        var enc = pairs.Select(p =>
        {
            var (ci, cs) = Preferences.Encode(tok, p.Prompt, p.Chat, p.Chosen, ctx);
            var (ri, rs) = Preferences.Encode(tok, p.Prompt, p.Chat, p.Rejected, ctx);
            return (p, ci, cs, ri, rs);
        }).ToList();
        var cachePath = run.PathOf("reference_logps.safetensors");
        var key = new Dictionary<string, string>
        {
            [ModelKey] = ModelSha256(reference),
            [PairsKey] = PairsSha256(enc.Select(e => (e.ci, e.cs, e.ri, e.rs))),
        };
        float[]? refC = null, refR = null;
        if (File.Exists(cachePath))
        {
            var cached = SafeTensors.Load(cachePath, out var meta);
            string? stale = !meta.ContainsKey(ModelKey) || !meta.ContainsKey(PairsKey) ? "it has no key"
                : meta[ModelKey] != key[ModelKey] ? "it was computed with another reference model"
                : meta[PairsKey] != key[PairsKey] || cached["chosen"].shape[0] != enc.Count ? "it was computed for other pairs"
                : null;
            if (stale is null) { refC = cached["chosen"].data<float>().ToArray(); refR = cached["rejected"].data<float>().ToArray(); }
            else log?.Invoke($"{cachePath}: {stale}; recomputing the reference log-probabilities");
            foreach (var t in cached.Values) t.Dispose();
        }
        if (refC is null || refR is null)
        {
            // A response of a K-wise ranking sits in K−1 pairs: score each distinct sequence once.
            var unique = new Dictionary<string, int>();
            var seqs = new List<(int[] Ids, int Start)>();
            int Slot(int[] ids, int start)
            {
                var key = start + ":" + string.Join(',', ids);
                if (!unique.TryGetValue(key, out int k)) { k = seqs.Count; unique[key] = k; seqs.Add((ids, start)); }
                return k;
            }
            var slots = enc.Select(e => (C: Slot(e.ci, e.cs), R: Slot(e.ri, e.rs))).ToList();
            log?.Invoke($"reference log-probabilities of {enc.Count} pairs ({seqs.Count} distinct sequences)");
            var logps = new float[seqs.Count];
            using (no_grad())
                for (int i = 0; i < seqs.Count; i += 64)
                {
                    using var scope = NewDisposeScope();
                    var chunk = seqs.GetRange(i, Math.Min(64, seqs.Count - i));
                    SequenceLogps(reference, chunk, tok.EosId()).cpu().data<float>().ToArray().CopyTo(logps, i);
                }
            refC = slots.Select(s => logps[s.C]).ToArray();
            refR = slots.Select(s => logps[s.R]).ToArray();
            SafeTensors.Save(cachePath, new Dictionary<string, Tensor> { ["chosen"] = tensor(refC), ["rejected"] = tensor(refR) }, key);
        }
        var encoded = enc.Select((e, i) => (e.p, new EncodedPair(e.ci, e.cs, e.ri, e.rs, refC[i], refR[i]))).ToList();
        var valSet = val.ToHashSet();
        var trainPairs = encoded.Where(e => !valSet.Contains(e.p)).Select(e => e.Item2).ToList();
        var valPairs = encoded.Where(e => valSet.Contains(e.p)).Select(e => e.Item2).ToList();
        log?.Invoke($"DPO ({c.LossType}, β = {c.Beta}): {trainPairs.Count} train pairs, {valPairs.Count} held out");

        List<string> evalPrompts = new();
        SentimentOracle? oracle = null;
        if (corpora is not null && rankings.All(r => !r.Chat))
        {
            evalPrompts = SentimentPrompts.Build(corpora).Eval.Take(c.EvalPrompts).ToList();
            oracle = SentimentOracle.FromCorpora(corpora);
        }
        RewardModel? rm = c.Reward is { } rp ? RewardCheckpoint.Load(rp, device).Model : null;

        var trainer = new DpoTrainer(c, policy, reference, tok, trainPairs, valPairs, evalPrompts, oracle, rm);
        var final = TrainingLoop.Run(trainer, c.Optim, run, resuming, progress, cancel);
        var rows = MetricsLog.Read(run.MetricsPath);
        Plots.Lines(run.PathOf("dpo_rewards.png"), "DPO implicit rewards", "step", "β·(log π − log π_ref)", new[]
        {
            ("chosen", rows.Where(r => r.ContainsKey("rewards/chosen")).Select(r => (r["step"], r["rewards/chosen"])).ToList()),
            ("rejected", rows.Where(r => r.ContainsKey("rewards/rejected")).Select(r => (r["step"], r["rewards/rejected"])).ToList()),
            ("margin", rows.Where(r => r.ContainsKey("rewards/margins")).Select(r => (r["step"], r["rewards/margins"])).ToList()),
        });
        Plots.LossCurve(run.MetricsPath, run.PathOf("loss.png"), "DPO loss");
        var summary = new Dictionary<string, object?>
        {
            ["val_loss"] = final.GetValueOrDefault("val_loss"),
            ["rewards/chosen"] = final.GetValueOrDefault("val_rewards/chosen"),
            ["rewards/rejected"] = final.GetValueOrDefault("val_rewards/rejected"),
            ["rewards/margins"] = final.GetValueOrDefault("val_rewards/margins"),
            ["rewards/accuracies"] = final.GetValueOrDefault("val_rewards/accuracies"),
            ["oracle_sentiment"] = final.GetValueOrDefault("eval_oracle_sentiment", double.NaN),
            ["oracle_sentiment_sd"] = final.GetValueOrDefault("eval_oracle_sentiment_sd", double.NaN),
            ["rm_score"] = final.GetValueOrDefault("eval_rm_score", double.NaN),
            ["kl_to_sft"] = final.GetValueOrDefault("eval_kl_to_sft", double.NaN),
            ["beta"] = c.Beta,
            ["loss_type"] = c.LossType,
            ["train_pairs"] = trainPairs.Count,
            ["val_pairs"] = valPairs.Count,
            ["steps"] = c.Optim.MaxSteps,
            ["wall_seconds"] = final.GetValueOrDefault("wall_seconds"),
        };
        run.WriteSummary(summary);
        return summary;
    }
}
