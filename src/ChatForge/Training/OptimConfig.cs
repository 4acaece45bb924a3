namespace ChatForge.Training;

/// <summary>The loop settings every trainer shares (a nested "optim" object in each trainer's config).</summary>
public sealed record OptimConfig
{
    /// <summary>Optimizer steps to run.</summary>
    public int MaxSteps { get; init; } = 1000;
    /// <summary>Sequences per micro-batch.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Micro-batches per optimizer step (gradient accumulation); the effective batch is batch_size × grad_accum.</summary>
    public int GradAccum { get; init; } = 1;
    /// <summary>Peak learning rate (AdamW).</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Learning rate at the end of the cosine decay.</summary>
    public double MinLr { get; init; } = 1e-4;
    /// <summary>Linear warmup steps.</summary>
    public int WarmupSteps { get; init; } = 100;
    /// <summary>Step at which the cosine reaches min_lr; null means max_steps.</summary>
    public int? DecaySteps { get; init; }
    /// <summary>AdamW weight decay, applied to 2-D weights only (matrices and embeddings), never to biases or LayerNorm.</summary>
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Eps { get; init; } = 1e-8;
    /// <summary>Clip the global gradient norm to this; 0 disables.</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Steps between metrics.jsonl lines.</summary>
    public int LogInterval { get; init; } = 10;
    /// <summary>Steps between held-out evaluations (and best-checkpoint checks); 0 = only at the end.</summary>
    public int EvalInterval { get; init; } = 200;
    /// <summary>Steps between resumable checkpoints; 0 = only at the end.</summary>
    public int CheckpointInterval { get; init; } = 200;

    [System.Text.Json.Serialization.JsonIgnore] public int Decay => DecaySteps ?? MaxSteps;

    public void Validate(string source)
    {
        void Check(bool ok, string key, object v, string rule)
        {
            if (!ok) throw new ChatForgeException($"{source}: 'optim.{key}' = {v} is out of range ({rule})");
        }
        Check(MaxSteps >= 1, "max_steps", MaxSteps, "≥ 1");
        Check(BatchSize >= 1, "batch_size", BatchSize, "≥ 1");
        Check(GradAccum >= 1, "grad_accum", GradAccum, "≥ 1");
        Check(LearningRate > 0, "learning_rate", LearningRate, "> 0");
        Check(MinLr >= 0 && MinLr <= LearningRate, "min_lr", MinLr, "0 ≤ min_lr ≤ learning_rate");
        Check(WarmupSteps >= 0, "warmup_steps", WarmupSteps, "≥ 0");
        Check(DecaySteps is null || DecaySteps >= WarmupSteps, "decay_steps", DecaySteps!, "≥ warmup_steps");
        Check(WeightDecay >= 0, "weight_decay", WeightDecay, "≥ 0");
        Check(Beta1 is >= 0 and < 1, "beta1", Beta1, "0 ≤ β1 < 1");
        Check(Beta2 is >= 0 and < 1, "beta2", Beta2, "0 ≤ β2 < 1");
        Check(Eps > 0, "eps", Eps, "> 0");
        Check(GradClip >= 0, "grad_clip", GradClip, "≥ 0");
        Check(LogInterval >= 1, "log_interval", LogInterval, "≥ 1");
        Check(EvalInterval >= 0, "eval_interval", EvalInterval, "≥ 0");
        Check(CheckpointInterval >= 0, "checkpoint_interval", CheckpointInterval, "≥ 0");
    }
}
