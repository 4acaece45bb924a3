using ChatForge.Checkpoints;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>
/// One micro-batch's result: its loss (a scalar with grad), tokens processed, and extra metrics.
/// <paramref name="LossScale"/> is what the loss is multiplied by before backward (and summed into
/// the step's logged loss): null means 1/grad_accum (each micro-batch a mean over equally many items);
/// trainers whose micro-batches differ in size return loss = sum / step total and scale 1.
/// </summary>
public sealed record MicroStepResult(Tensor Loss, long Tokens, IReadOnlyDictionary<string, double>? Metrics = null, double? LossScale = null);

/// <summary>What a trainer plugs into <see cref="TrainingLoop"/>: the model, one micro-step, evaluation, saving.</summary>
public interface ITrainable
{
    nn.Module Model { get; }
    /// <summary>Parameters the optimizer updates (all of them, or only LoRA adapters, or a head).</summary>
    IEnumerable<(string Name, Parameter Param)> TrainableParameters();
    /// <summary>Loss of micro-batch <paramref name="micro"/> of step <paramref name="step"/> (mean over its items).</summary>
    MicroStepResult MicroStep(long step, int micro, int microBatches);
    /// <summary>Held-out metrics (called under no_grad, in eval mode).</summary>
    IReadOnlyDictionary<string, double> Evaluate();
    /// <summary>The metric that picks the best checkpoint (lower is better), e.g. "val_loss".</summary>
    string BestMetric { get; }
    /// <summary>Writes the model files (Hugging Face layout) into <paramref name="dir"/>.</summary>
    void SaveModel(string dir);
}

/// <summary>Progress report for a UI: step, loss, throughput, ETA.</summary>
public sealed record TrainingProgress(long Step, long MaxSteps, double Loss, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta,
                                      IReadOnlyDictionary<string, double>? Eval = null);

/// <summary>
/// The loop every trainer shares, written once: AdamW with decay on 2-D weights only, warmup +
/// cosine schedule, gradient accumulation, clipping, periodic evaluation, best checkpoint,
/// resumable checkpoints (weights + optimizer + RNG + step, swapped in atomically), metrics.jsonl and
/// TensorBoard. Each optimizer step runs inside its own dispose scope.
/// </summary>
public sealed class TrainingLoop
{
    /// <summary>Steps between returning freed native memory to the OS (see TorchRuntime.TrimNativeHeap).</summary>
    public const int TrimEvery = RunClock.TrimEvery;

    public static AdamW CreateOptimizer(IEnumerable<(string Name, Parameter Param)> parameters, OptimConfig o)
    {
        var list = parameters.ToList();
        var decay = list.Where(p => p.Param.dim() >= 2).Select(p => p.Param).ToList();
        var noDecay = list.Where(p => p.Param.dim() < 2).Select(p => p.Param).ToList();
        var groups = new List<AdamW.ParamGroup>();
        if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, o.LearningRate, o.Beta1, o.Beta2, o.Eps, o.WeightDecay, false, false));
        if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, o.LearningRate, o.Beta1, o.Beta2, o.Eps, 0.0, false, false));
        if (groups.Count == 0) throw new ChatForgeException("nothing to train: no trainable parameters");
        return new AdamW(groups, o.LearningRate, o.Beta1, o.Beta2, o.Eps, o.WeightDecay, false, false);
    }

    /// <summary>Runs (or resumes) training; returns the final metrics (last evaluation plus throughput).</summary>
    public static Dictionary<string, double> Run(ITrainable task, OptimConfig o, RunDirectory run, bool resume,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var trainable = task.TrainableParameters().ToList();
        var parameters = trainable.Select(p => p.Param).ToList();
        using var optimizer = CreateOptimizer(trainable, o);
        var state = new TrainingState();
        if (resume && run.HasCheckpoint)
            state = RunCheckpoint.Load(run, optimizer);
        long startStep = state.Step;
        using var log = new MetricsLog(run, resume ? startStep : -1);

        var clock = new RunClock(state.ElapsedSeconds, startStep);
        long tokens = state.TokensSeen, tokensAtLog = tokens;
        double best = state.BestMetric, lastLoss = double.NaN;
        double windowStart = 0;
        IReadOnlyDictionary<string, double> lastEval = new Dictionary<string, double>();
        var trainMetrics = new Dictionary<string, double>();

        for (long step = startStep; step < o.MaxSteps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            double lr = LrSchedule.At(step, o.LearningRate, o.MinLr, o.WarmupSteps, o.Decay);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            task.Model.train();
            double lossSum = 0, gradNorm;
            var extraSums = new Dictionary<string, double>();
            using (var scope = NewDisposeScope())
            {
                optimizer.zero_grad();
                for (int m = 0; m < o.GradAccum; m++)
                {
                    var r = task.MicroStep(step, m, o.GradAccum);
                    double scale = r.LossScale ?? 1.0 / o.GradAccum;
                    (r.Loss * scale).backward();
                    lossSum += r.Loss.item<float>() * scale;
                    tokens += r.Tokens;
                    if (r.Metrics is not null)
                        foreach (var (k, v) in r.Metrics) extraSums[k] = extraSums.GetValueOrDefault(k) + v;
                }
                gradNorm = o.GradClip > 0 ? nn.utils.clip_grad_norm_(parameters, o.GradClip) : GradNorm(parameters);
                optimizer.step();
            }
            lastLoss = lossSum;
            RunClock.TrimAfter(step + 1);
            if (!double.IsFinite(lastLoss))
                throw new ChatForgeException($"training diverged at step {step}: loss is {lastLoss} (lower learning_rate, or check the data)");
            long done = step + 1;
            bool isLast = done == o.MaxSteps;
            bool doEval = isLast || (o.EvalInterval > 0 && done % o.EvalInterval == 0);
            bool doLog = doEval || done % o.LogInterval == 0 || done == 1;
            bool doCheckpoint = isLast || (o.CheckpointInterval > 0 && done % o.CheckpointInterval == 0);

            double now = clock.SessionSeconds;
            double tps = (tokens - tokensAtLog) / Math.Max(1e-9, now - windowStart);
            Dictionary<string, double> metrics = new();
            if (doLog)
            {
                metrics["loss"] = lastLoss;
                metrics["lr"] = lr;
                metrics["grad_norm"] = gradNorm;
                metrics["tokens_per_second"] = tps;
                metrics["tokens"] = tokens;
                metrics["elapsed_s"] = clock.ElapsedBefore + now;
                foreach (var (k, v) in extraSums) metrics[k] = v / o.GradAccum;
                foreach (var (k, v) in extraSums) trainMetrics[k] = v / o.GradAccum;
                tokensAtLog = tokens; windowStart = now;
            }
            if (doEval)
            {
                task.Model.eval();
                using (no_grad())
                using (NewDisposeScope())
                    lastEval = task.Evaluate();
                Native.TorchRuntime.TrimNativeHeap();
                foreach (var (k, v) in lastEval) metrics[k] = v;
                if (lastEval.TryGetValue(task.BestMetric, out var score) && score < best)
                {
                    best = score;
                    AtomicFile.ReplaceDirectory(run.BestDir, task.SaveModel);
                }
            }
            if (doLog) log.Write(done, metrics);
            if (doCheckpoint)
            {
                var st = new TrainingState
                {
                    Step = done, BestMetric = best, TokensSeen = tokens, ElapsedSeconds = clock.TotalSeconds, Seed = state.Seed,
                };
                RunCheckpoint.Save(run, task.SaveModel, st, optimizer);
            }
            progress?.Invoke(clock.Progress(done, o.MaxSteps, lastLoss, tps, doEval ? lastEval : null));
        }
        if (startStep >= o.MaxSteps)
        {
            // Resumed a finished run: nothing to train, but report the checkpoint's metrics.
            task.Model.eval();
            using (no_grad())
            using (NewDisposeScope())
                lastEval = task.Evaluate();
        }

        var final = new Dictionary<string, double>(lastEval)
        {
            ["train_loss"] = lastLoss,
            ["steps"] = o.MaxSteps,
            ["train_tokens"] = tokens,
            ["wall_seconds"] = clock.TotalSeconds,
            ["tokens_per_second"] = (tokens - state.TokensSeen) / Math.Max(1e-9, clock.SessionSeconds),
        };
        if (double.IsFinite(best)) final["best_" + task.BestMetric] = best;
        foreach (var (k, v) in trainMetrics) final["train_" + k] = v;
        return final;
    }

    static double GradNorm(IEnumerable<Parameter> ps)
    {
        double s = 0;
        foreach (var p in ps)
            if (p.grad is { } g) s += g.pow(2).sum().item<float>();
        return Math.Sqrt(s);
    }
}
