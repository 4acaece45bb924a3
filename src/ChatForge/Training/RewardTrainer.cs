using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Labeling;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Checkpoints;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>Reward-model training on human (here: oracle-labeler) rankings.</summary>
public sealed record RewardConfig : RunOptions
{
    /// <summary>The SFT model whose backbone initialises the reward model.</summary>
    public string Model { get; init; } = "";
    /// <summary>Rankings or pairs JSONL; empty means: collect rankings from the SFT model with <see cref="Collect"/>.</summary>
    public List<string> Data { get; init; } = new();
    public CollectConfig Collect { get; init; } = new() { Prompts = 4000 };
    /// <summary>
    /// Rankings of earlier rounds (JSONL), trained on beside the ones collected or given now: iterated RLHF retrains the
    /// reward model on all rankings collected so far. Missing files are errors.
    /// </summary>
    public List<string> EarlierRankings { get; init; } = new();
    /// <summary>Fraction of prompts held out for accuracy and loss.</summary>
    public double ValFraction { get; init; } = 0.1;
    /// <summary>Optional margin m in −log σ(r_w − r_l − m).</summary>
    public double Margin { get; init; }
    /// <summary>The final reward model is the checkpoint with the lowest held-out loss (early stopping).</summary>
    public OptimConfig Optim { get; init; } = new()
    {
        MaxSteps = 300, BatchSize = 16, LearningRate = 3e-4, MinLr = 3e-5, WarmupSteps = 20,
        EvalInterval = 25, CheckpointInterval = 50, LogInterval = 10, WeightDecay = 0.0,
    };

    public void Validate(string source)
    {
        if (string.IsNullOrEmpty(Model)) throw new ChatForgeException($"{source}: 'model' (the SFT model directory, --sft) is required");
        if (ValFraction is <= 0 or >= 1) throw new ChatForgeException($"{source}: 'val_fraction' = {ValFraction} is out of range (0 < f < 1)");
        if (Margin < 0) throw new ChatForgeException($"{source}: 'margin' = {Margin} is out of range (≥ 0)");
        Collect.Validate(source);
        Optim.Validate(source);
    }

    public static RewardConfig Demo => new();
    public static RewardConfig Tiny => new()
    {
        Collect = new CollectConfig { Prompts = 24, K = 3, MaxNewTokens = 8 },
        Optim = new OptimConfig { MaxSteps = 10, BatchSize = 4, LearningRate = 1e-3, MinLr = 1e-4, WarmupSteps = 2, EvalInterval = 5, CheckpointInterval = 5, LogInterval = 2, WeightDecay = 0 },
    };

    public static RewardConfig Load(string? preset, string? file) => ConfigMerge.Load(preset, file, Demo, Tiny);
}

/// <summary>
/// Trains the scalar head and the backbone with the K-wise ranking loss: every response of a prompt is
/// scored once per step and all C(K,2) pairs are formed from those scores.
/// </summary>
public sealed class RewardTrainer : ITrainable
{
    readonly RewardConfig _c;
    readonly RewardModel _rm;
    readonly ITokenizer _tok;
    readonly List<Ranking> _train, _val;
    readonly Device _device;
    readonly EpochSampler _sampler;

    public RewardTrainer(RewardConfig c, RewardModel rm, ITokenizer tok, List<Ranking> train, List<Ranking> val)
    {
        _c = c; _rm = rm; _tok = tok; _train = train; _val = val;
        _device = rm.Backbone.TokenEmbedding.device;
        _sampler = new EpochSampler(train.Count, c.Seed, c.Optim.BatchSize * c.Optim.GradAccum);
    }

    public nn.Module Model => _rm;
    public string BestMetric => "val_loss";
    public IEnumerable<(string, Parameter)> TrainableParameters() => _rm.TrainableParameters();

    /// <summary>Scores (P, K) for a group of rankings, and their ranks (P, K; 0 marks an empty slot).</summary>
    public static (Tensor Scores, Tensor Ranks) Score(RewardModel rm, ITokenizer tok, IReadOnlyList<Ranking> group)
    {
        int k = group.Max(r => r.Responses.Count);
        int ctx = rm.Backbone.Context;
        var seqs = group.SelectMany(r => r.Responses.Select(x => Preferences.Encode(tok, r.Prompt, r.Chat, x, ctx).Ids)).ToList();
        var (ids, last) = CausalBatch.Sequences(seqs, tok.EosId(), rm.Backbone.TokenEmbedding.device);
        var flat = rm.ScoresAt(ids, last);
        // Scatter into (P, K) slots.
        var slot = new long[seqs.Count];
        var ranks = new long[group.Count * k];
        int n = 0;
        for (int p = 0; p < group.Count; p++)
            for (int j = 0; j < group[p].Responses.Count; j++) { slot[n++] = p * k + j; ranks[p * k + j] = group[p].Ranks[j]; }
        var dev = flat.device;
        var scores = zeros(group.Count * k, device: dev).index_put_(flat, tensor(slot, device: dev)).view(group.Count, k);
        return (scores, tensor(ranks, new long[] { group.Count, k }, device: dev));
    }

    public MicroStepResult MicroStep(long step, int micro, int microBatches)
    {
        var group = _sampler.Indices(step, micro * _c.Optim.BatchSize, _c.Optim.BatchSize).Select(i => _train[i]).ToList();
        var (scores, ranks) = Score(_rm, _tok, group);
        var (sum, _) = Losses.RankingLossSum(scores, ranks, _c.Margin);
        // The step's loss is the mean over all its prompts that have pairs (a ranking whose responses all
        // tie has none), whichever micro-batch they sit in: this one's sum / the step's count, scale 1.
        int counted = _sampler.Indices(step, 0, _c.Optim.BatchSize * microBatches).Count(i => HasPairs(_train[i]));
        var (right, pairs) = Losses.PairwiseAccuracy(scores.detach(), ranks);
        return new MicroStepResult(sum / Math.Max(1, counted), group.Sum(r => (long)r.Responses.Count),
            new Dictionary<string, double> { ["accuracy"] = pairs == 0 ? 0 : right / pairs }, LossScale: 1.0);
    }

    static bool HasPairs(Ranking r) => r.Ranks.Distinct().Count() > 1;

    public IReadOnlyDictionary<string, double> Evaluate() => Evaluate(_rm, _tok, _val, _c.Optim.BatchSize, _c.Margin);

    /// <summary>Held-out loss, accuracy against the labeler's rankings, and against the noiseless oracle (when its scores are known).</summary>
    public static Dictionary<string, double> Evaluate(RewardModel rm, ITokenizer tok, IReadOnlyList<Ranking> val, int batch, double margin = 0)
    {
        double loss = 0, right = 0, pairs = 0, oRight = 0, oPairs = 0, groups = 0;
        for (int i = 0; i < val.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            var group = val.Skip(i).Take(batch).ToList();
            var (scores, ranks) = Score(rm, tok, group);
            var (sum, counted) = Losses.RankingLossSum(scores, ranks, margin);   // prompts whose responses all tie do not count
            loss += sum.item<float>();
            groups += counted.item<float>();
            var (r, p) = Losses.PairwiseAccuracy(scores, ranks);
            right += r; pairs += p;
            var s = scores.cpu().data<float>().ToArray();
            int k = (int)scores.shape[1];
            for (int g = 0; g < group.Count; g++)
            {
                if (group[g].OracleScores is not { } o) continue;
                for (int a = 0; a < o.Count; a++)
                    for (int b = 0; b < o.Count; b++)
                        if (o[a] > o[b]) { oPairs++; if (s[g * k + a] > s[g * k + b]) oRight++; }
            }
        }
        var m = new Dictionary<string, double>
        {
            ["val_loss"] = loss / Math.Max(1, groups),
            ["val_accuracy"] = pairs == 0 ? double.NaN : right / pairs,
        };
        if (oPairs > 0) m["val_oracle_accuracy"] = oRight / oPairs;
        return m;
    }

    public void SaveModel(string dir)
    {
        SetNormalization(_rm, _tok, _val);
        _rm.Save(dir, _tok);
    }

    /// <summary>Reward normalisation: mean and standard deviation of raw rewards over a reference set (the held-out responses).</summary>
    public static void SetNormalization(RewardModel rm, ITokenizer tok, IReadOnlyList<Ranking> reference)
    {
        var raw = rm.Rate(tok, reference.SelectMany(r => r.Responses.Select(x => (r.Prompt, r.Chat, x))).ToList(), normalize: false);
        rm.Mean = raw.Average();
        rm.Std = Math.Max(1e-6, Math.Sqrt(raw.Select(v => (v - rm.Mean) * (v - rm.Mean)).Sum() / Math.Max(1, raw.Length - 1)));
    }

    /// <param name="collectWith">Model that samples the responses to rank when rankings are collected (default: the SFT model, <c>c.Model</c>).</param>
    public static Dictionary<string, object?> Run(RewardConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default, string? collectWith = null)
    {
        c.Validate("reward config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume);

        // Rankings: given, or collected now from the SFT model (saved in the run directory for reuse).
        List<Ranking> rankings;
        var collected = run.PathOf("rankings.jsonl");
        Dictionary<string, double>? collectStats = null;
        if (c.Data.Count > 0) rankings = c.Data.SelectMany(Preferences.ReadRankings).ToList();
        else if (File.Exists(collected)) rankings = Preferences.ReadRankings(collected);
        else
        {
            var (sft, stok, _) = HfCheckpoint.Load(collectWith ?? c.Model, device);
            log?.Invoke($"collecting {c.Collect.Prompts} {c.Collect.Task} rankings of {c.Collect.K} responses from {collectWith ?? c.Model}");
            (rankings, collectStats) = PreferenceCollection.Collect(sft, stok, Corpora.OpenOrFetch(c.Cache, log), c.Collect, log);
            Preferences.WriteRankings(collected, rankings);
            Preferences.WritePairs(run.PathOf("pairs.jsonl"), rankings.SelectMany(Preferences.ToPairs));
            sft.Dispose();
        }
        if (c.EarlierRankings.Count > 0)
        {
            var earlier = c.EarlierRankings.SelectMany(Preferences.ReadRankings).ToList();
            log?.Invoke($"rankings: {rankings.Count} new and {earlier.Count} from earlier rounds");
            rankings = earlier.Concat(rankings).ToList();
        }
        collectStats ??= PreferenceCollection.LabelerStats(rankings);
        var val = rankings.Where(r => HashSplit.Unit(c.Seed, "rm:" + r.Prompt.Key + r.Responses[0]) < c.ValFraction).ToList();
        var train = rankings.Except(val).ToList();
        if (rankings.Count < 2) throw new ChatForgeException($"need at least two rankings (got {rankings.Count})");
        if (val.Count == 0) { val.Add(train[^1]); train.RemoveAt(train.Count - 1); }   // tiny data: hold out at least one
        if (train.Count == 0) { train.Add(val[^1]); val.RemoveAt(val.Count - 1); }
        log?.Invoke($"rankings: {train.Count} train, {val.Count} held out; labeler agrees with the oracle on {collectStats.GetValueOrDefault("labeler_agreement"):P0} of pairs");

        RewardModel rm; ITokenizer tok;
        if (resuming) (rm, tok) = RewardCheckpoint.Load(run.ModelDir, device);
        else
        {
            var (gpt, t, _) = HfCheckpoint.Load(c.Model, device);
            (rm, tok) = (new RewardModel(gpt), t);
        }
        var trainer = new RewardTrainer(c, rm, tok, train, val);
        var final = TrainingLoop.Run(trainer, c.Optim, run, resuming, progress, cancel);
        // Early stopping: the reward model is the checkpoint with the lowest held-out loss (best/), which
        // becomes model/ (its training_state kept, so --resume still continues the run).
        if (Directory.Exists(run.BestDir) && File.Exists(Path.Combine(run.BestDir, HfCheckpoint.WeightsFile)))
        {
            var state = run.StateDir;
            Util.AtomicFile.ReplaceDirectory(run.ModelDir, dir =>
            {
                foreach (var f in Directory.GetFiles(run.BestDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
                if (Directory.Exists(state))
                {
                    Directory.CreateDirectory(Path.Combine(dir, TrainingState.DirName));
                    foreach (var f in Directory.GetFiles(state)) File.Copy(f, Path.Combine(dir, TrainingState.DirName, Path.GetFileName(f)));
                }
            });
            rm.Dispose();
            (rm, _) = RewardCheckpoint.Load(run.ModelDir, device);
            foreach (var (k, v) in Evaluate(rm, tok, val, c.Optim.BatchSize, c.Margin)) final[k] = v;
        }
        Plots.Lines(run.PathOf("reward_accuracy.png"), "Reward model accuracy", "step", "pairwise accuracy", new[]
        {
            ("train (labeler)", MetricsLog.Read(run.MetricsPath).Where(r => r.ContainsKey("accuracy")).Select(r => (r["step"], r["accuracy"])).ToList()),
            ("held-out (labeler)", MetricsLog.Read(run.MetricsPath).Where(r => r.ContainsKey("val_accuracy")).Select(r => (r["step"], r["val_accuracy"])).ToList()),
            ("held-out (noiseless oracle)", MetricsLog.Read(run.MetricsPath).Where(r => r.ContainsKey("val_oracle_accuracy")).Select(r => (r["step"], r["val_oracle_accuracy"])).ToList()),
        });
        Plots.LossCurve(run.MetricsPath, run.PathOf("loss.png"), "Reward model ranking loss");
        var summary = new Dictionary<string, object?>
        {
            ["heldout_accuracy"] = final.GetValueOrDefault("val_oracle_accuracy", double.NaN),
            ["heldout_labeler_accuracy"] = final.GetValueOrDefault("val_accuracy"),
            ["val_loss"] = final.GetValueOrDefault("val_loss"),
            ["train_accuracy"] = final.GetValueOrDefault("train_accuracy"),
            ["train_loss"] = final.GetValueOrDefault("train_loss"),
            ["labeler_agreement"] = collectStats.GetValueOrDefault("labeler_agreement"),
            ["tie_fraction"] = collectStats.GetValueOrDefault("tie_fraction"),
            ["train_rankings"] = train.Count,
            ["val_rankings"] = val.Count,
            ["reward_mean"] = rm.Mean,
            ["reward_std"] = rm.Std,
            ["steps"] = c.Optim.MaxSteps,
            ["wall_seconds"] = final.GetValueOrDefault("wall_seconds"),
        };
        // Per alignment family (rankings that say which criterion they test): held-out accuracy against the oracle.
        var byFamily = val.Where(r => r.Family is not null).GroupBy(r => r.Family!).OrderBy(g => g.Key).ToDictionary(g => g.Key, g =>
        {
            var acc = Evaluate(rm, tok, g.ToList(), c.Optim.BatchSize, c.Margin).GetValueOrDefault("val_oracle_accuracy", double.NaN);
            return double.IsFinite(acc) ? acc : (double?)null;
        });
        if (byFamily.Count > 0)
        {
            summary["heldout_accuracy_by_family"] = byFamily;
            log?.Invoke($"held-out accuracy by family: {string.Join(", ", byFamily.Select(kv => $"{kv.Key} {kv.Value:F3}"))}");
        }
        run.WriteSummary(summary);
        return summary;
    }
}
