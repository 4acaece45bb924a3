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
        var state = resume && run.HasCheckpoint ? RunCheckpoint.Load(run, optimizer) : new TrainingState();
        long startStep = state.Step;
        using var log = new MetricsLog(run, resume ? startStep : -1);

        var clock = new RunClock(state.ElapsedSeconds, startStep);
        long tokens = state.TokensSeen, tokensAtLog = tokens;
        double best = state.BestMetric, lastLoss = double.NaN, windowStart = 0;
        IReadOnlyDictionary<string, double> lastEval = new Dictionary<string, double>();
        var trainMetrics = new Dictionary<string, double>();

        for (long step = startStep; step < o.MaxSteps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            double lr = LrSchedule.At(step, o.LearningRate, o.MinLr, o.WarmupSteps, o.Decay);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            var r = OptimizerStep(task, optimizer, parameters, o, step);
            lastLoss = r.Loss;
            tokens += r.Tokens;
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
            var metrics = new Dictionary<string, double>();
            if (doLog)
            {
                metrics["loss"] = lastLoss;
                metrics["lr"] = lr;
                metrics["grad_norm"] = r.GradNorm;
                metrics["tokens_per_second"] = tps;
                metrics["tokens"] = tokens;
                metrics["elapsed_s"] = clock.ElapsedBefore + now;
                foreach (var (k, v) in r.Metrics) metrics[k] = trainMetrics[k] = v;
                tokensAtLog = tokens; windowStart = now;
            }
            if (doEval)
            {
                lastEval = Evaluate(task);
                foreach (var (k, v) in lastEval) metrics[k] = v;
                if (lastEval.TryGetValue(task.BestMetric, out var score) && score < best)
                {
                    best = score;
                    AtomicFile.ReplaceDirectory(run.BestDir, task.SaveModel);
                }
            }
            if (doLog) log.Write(done, metrics);
            if (doCheckpoint)
                RunCheckpoint.Save(run, task.SaveModel, new TrainingState
                {
                    Step = done, BestMetric = best, TokensSeen = tokens, ElapsedSeconds = clock.TotalSeconds, Seed = state.Seed,
                }, optimizer);
            progress?.Invoke(clock.Progress(done, o.MaxSteps, lastLoss, tps, doEval ? lastEval : null));
        }
        // A resumed run that was already finished trains nothing, but reports the checkpoint's metrics.
        if (startStep >= o.MaxSteps) lastEval = Evaluate(task);

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

    /// <summary>What one optimizer step did: its loss, gradient norm before clipping, tokens, and the trainer's own metrics (means over micro-batches).</summary>
    sealed record StepResult(double Loss, double GradNorm, long Tokens, Dictionary<string, double> Metrics);

    /// <summary>
    /// One optimizer step in its own dispose scope: the micro-batches' losses, each scaled (1/grad_accum or the
    /// trainer's own scale) and back-propagated, then clipping and the update.
    /// </summary>
    static StepResult OptimizerStep(ITrainable task, AdamW optimizer, List<Parameter> parameters, OptimConfig o, long step)
    {
        task.Model.train();
        double lossSum = 0;
        long tokens = 0;
        var sums = new Dictionary<string, double>();
        using var scope = NewDisposeScope();
        optimizer.zero_grad();
        for (int m = 0; m < o.GradAccum; m++)
        {
            var r = task.MicroStep(step, m, o.GradAccum);
            double scale = r.LossScale ?? 1.0 / o.GradAccum;
            (r.Loss * scale).backward();
            lossSum += r.Loss.item<float>() * scale;
            tokens += r.Tokens;
            if (r.Metrics is not null)
                foreach (var (k, v) in r.Metrics) sums[k] = sums.GetValueOrDefault(k) + v;
        }
        double gradNorm = o.GradClip > 0 ? nn.utils.clip_grad_norm_(parameters, o.GradClip) : GradNorm(parameters);
        optimizer.step();
        return new StepResult(lossSum, gradNorm, tokens, sums.ToDictionary(kv => kv.Key, kv => kv.Value / o.GradAccum));
    }

    /// <summary>The trainer's held-out metrics, in eval mode, without gradients, in a dispose scope of their own.</summary>
    static IReadOnlyDictionary<string, double> Evaluate(ITrainable task)
    {
        task.Model.eval();
        IReadOnlyDictionary<string, double> result;
        using (no_grad())
        using (NewDisposeScope())
            result = task.Evaluate();
        Native.TorchRuntime.TrimNativeHeap();
        return result;
    }

    static double GradNorm(IEnumerable<Parameter> ps)
    {
        double s = 0;
        foreach (var p in ps)
            if (p.grad is { } g) s += g.pow(2).sum().item<float>();
        return Math.Sqrt(s);
    }
}
