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
    /// <summary>A pair as token sequences (response tokens are the targets) with the reference model's log-probabilities.</summary>
    sealed record EncodedPair(Segment Chosen, Segment Rejected, float RefChosen, float RefRejected)
    {
        public int ChosenTokens => ResponseTokens(Chosen);
        public int RejectedTokens => ResponseTokens(Rejected);
    }

    readonly DpoConfig _c;
    readonly CausalLM _policy, _ref;
    readonly ITokenizer _tok;
    readonly List<EncodedPair> _train, _val;
    readonly EpochSampler _sampler;
    readonly List<string> _evalPrompts;
    readonly SentimentOracle? _oracle;
    readonly RewardModel? _rm;

    DpoTrainer(DpoConfig c, CausalLM policy, CausalLM reference, ITokenizer tok, List<EncodedPair> train, List<EncodedPair> val,
               List<string> evalPrompts, SentimentOracle? oracle, RewardModel? rm)
    {
        _c = c; _policy = policy; _ref = reference; _tok = tok; _train = train; _val = val;
        _evalPrompts = evalPrompts; _oracle = oracle; _rm = rm;
        _sampler = new EpochSampler(train.Count, c.Seed, c.Optim.BatchSize * c.Optim.GradAccum);
    }

    public nn.Module Model => _policy;
    public string BestMetric => "val_loss";
    public IEnumerable<(string, Parameter)> TrainableParameters() => _policy.named_parameters();

    /// <summary>The number of response tokens a sequence log-probability sums over (at least 1).</summary>
    static int ResponseTokens(Segment s) => Math.Max(1, s.Train.Count(t => t));

    (Tensor Loss, Dictionary<string, double> Metrics) Batch(IReadOnlyList<EncodedPair> pairs)
    {
        var all = LogProbs.SequenceLogProbs(_policy, pairs.Select(p => p.Chosen).Concat(pairs.Select(p => p.Rejected)).ToList(), _tok.EosId());
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
        return new MicroStepResult(loss, pairs.Sum(p => (long)p.Chosen.Ids.Length + p.Rejected.Ids.Length), m);
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

    /// <summary>
    /// Train and held-out pairs, split by prompt (a hash of the prompt with the seed): all pairs of a prompt
    /// (a K-wise ranking gives C(K,2)) sit on one side, so the held-out loss is measured on unseen prompts.
    /// </summary>
    public static (List<PreferencePair> Train, List<PreferencePair> Val) Split(IReadOnlyList<PreferencePair> pairs, long seed, double valFraction)
    {
        bool Held(PreferencePair p) => HashSplit.Unit(seed, "dpo:" + p.Prompt.Key) < valFraction;
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
        var rankings = LoadRankings(c, run, reference, tok, corpora, log);
        var pairs = rankings.SelectMany(Preferences.ToPairs).ToList();
        var (train, val) = Split(pairs, c.Seed, c.ValFraction);
        if (train.Count == 0 || val.Count == 0)
            throw new ChatForgeException($"need preference pairs on both sides of the {c.ValFraction} split by prompt (got {pairs.Count} pairs of {pairs.Select(p => p.Prompt.Key).Distinct().Count()} prompts)");

        int ctx = policy.Context;
        Segment Encode(PreferencePair p, string response)
        {
            var (ids, start) = Preferences.Encode(tok, p.Prompt, p.Chat, response, ctx);
            return Segment.From(ids, start);
        }
        var sequences = pairs.Select(p => (Chosen: Encode(p, p.Chosen), Rejected: Encode(p, p.Rejected))).ToList();
        var (refChosen, refRejected) = ReferenceLogProbCache.Get(run.PathOf("reference_logps.safetensors"), reference, tok, sequences, log);
        var encoded = pairs.Select((p, i) => (Pair: p, Encoded: new EncodedPair(sequences[i].Chosen, sequences[i].Rejected, refChosen[i], refRejected[i]))).ToList();
        var valSet = val.ToHashSet();
        var trainPairs = encoded.Where(e => !valSet.Contains(e.Pair)).Select(e => e.Encoded).ToList();
        var valPairs = encoded.Where(e => valSet.Contains(e.Pair)).Select(e => e.Encoded).ToList();
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
        WritePlots(run);
        var summary = Summary(c, final, trainPairs.Count, valPairs.Count);
        run.WriteSummary(summary);
        return summary;
    }

    /// <summary>The rankings of --data, or those collected earlier into the run directory, or freshly collected from the SFT model.</summary>
    static List<Ranking> LoadRankings(DpoConfig c, RunDirectory run, CausalLM sft, ITokenizer tok, Corpora? corpora, Action<string>? log)
    {
        if (c.Data.Count > 0) return c.Data.SelectMany(Preferences.ReadRankings).ToList();
        var collected = run.PathOf("rankings.jsonl");
        if (File.Exists(collected)) return Preferences.ReadRankings(collected);
        log?.Invoke($"collecting {c.Collect.Prompts} {c.Collect.Task} rankings of {c.Collect.K} responses from {c.Model}");
        var (rankings, _) = PreferenceCollection.Collect(sft, tok, corpora!, c.Collect, log);
        Preferences.WriteRankings(collected, rankings);
        return rankings;
    }

    static void WritePlots(RunDirectory run)
    {
        var rows = MetricsLog.Read(run.MetricsPath);
        List<(double, double)> Series(string key) => rows.Where(r => r.ContainsKey(key)).Select(r => (r["step"], r[key])).ToList();
        Plots.Lines(run.PathOf("dpo_rewards.png"), "DPO implicit rewards", "step", "β·(log π − log π_ref)", new[]
        {
            ("chosen", Series("rewards/chosen")), ("rejected", Series("rewards/rejected")), ("margin", Series("rewards/margins")),
        });
        Plots.LossCurve(run.MetricsPath, run.PathOf("loss.png"), "DPO loss");
    }

    static Dictionary<string, object?> Summary(DpoConfig c, IReadOnlyDictionary<string, double> final, int trainPairs, int valPairs) => new()
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
        ["train_pairs"] = trainPairs,
        ["val_pairs"] = valPairs,
        ["steps"] = c.Optim.MaxSteps,
        ["wall_seconds"] = final.GetValueOrDefault("wall_seconds"),
    };
}
