using ChatForge.Labeling;
using ChatForge.Util;

namespace ChatForge.Training;

/// <summary>Adaptive KL controller (Ziegler et al. 2019): β ← β·(1 + clip((KL − target)/target, ±0.2)·n/horizon).</summary>
public sealed record AdaptiveKlConfig
{
    /// <summary>Target KL to the reference, nats per response.</summary>
    public double Target { get; init; } = 4.0;
    public double Horizon { get; init; } = 2000;
}

/// <summary>RLHF with PPO (InstructGPT): reward − β·KL to the SFT model, plus γ·pretraining log-likelihood (PPO-ptx).</summary>
public sealed record PpoConfig : RunOptions
{
    /// <summary>The SFT model: the policy starts here and the frozen reference is a copy.</summary>
    public string Model { get; init; } = "";
    /// <summary>The reward model (frozen).</summary>
    public string Reward { get; init; } = "";
    /// <summary>
    /// Where pretraining recorded its split (split.json, or the pretraining run or checkpoint holding it), for
    /// PPO-ptx's training text and the held-out pretraining loss. Null: found from the SFT model through the
    /// chatforge.base_model chain of config.json files.
    /// </summary>
    public string? Pretrain { get; init; }
    /// <summary>
    /// What the demo's prompts and oracle are (when <see cref="Prompts"/> is empty): "sentiment" (corpus sentence openings
    /// continued as plain text, the lexicon oracle) or "hhh" (the alignment task's training prompts of every family as
    /// chat messages, held-out prompts of every kind for evaluation, the alignment oracle).
    /// </summary>
    public string Task { get; init; } = "sentiment";
    /// <summary>The refusal and abstention the hhh task's oracle ranks.</summary>
    public Data.AlignmentTexts Alignment { get; init; } = new();
    /// <summary>{"prompt"} JSONL files; empty means the demo's prompts of <see cref="Task"/>.</summary>
    public List<string> Prompts { get; init; } = new();
    /// <summary>Prompts are user messages under the chat template (true) or plain text the response continues (false).</summary>
    public bool Chat { get; init; }
    /// <summary>PPO iterations (rollout + update) per round.</summary>
    public int Iterations { get; init; } = 60;
    /// <summary>Prompts per rollout.</summary>
    public int RolloutBatch { get; init; } = 32;
    /// <summary>Sequences per PPO minibatch.</summary>
    public int MiniBatch { get; init; } = 16;
    /// <summary>Passes over each rollout.</summary>
    public int PpoEpochs { get; init; } = 2;
    public int MaxNewTokens { get; init; } = 24;
    /// <summary>Initial (or fixed) KL coefficient β.</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>Adapt β toward a target KL (null: β fixed).</summary>
    public AdaptiveKlConfig? AdaptiveKl { get; init; }
    public double Gamma { get; init; } = 1.0;
    public double Lambda { get; init; } = 0.95;
    public double ClipRange { get; init; } = 0.2;
    public double ClipRangeValue { get; init; } = 0.2;
    public double EntropyCoef { get; init; }
    /// <summary>Clip the normalised reward-model score to ±this (null: no clipping).</summary>
    public double? ScoreClip { get; init; } = 5.0;
    public bool WhitenAdvantages { get; init; } = true;
    /// <summary>Stop the epochs over a rollout early when the approximate KL between the new and the rollout policy exceeds this (per token).</summary>
    public double EarlyStopKl { get; init; } = 0.1;
    /// <summary>γ of PPO-ptx: weight of the next-token loss on pretraining batches mixed into each update (0: plain PPO).</summary>
    public double PtxCoef { get; init; }
    /// <summary>Pretraining sequences per update for PPO-ptx.</summary>
    public int PtxBatch { get; init; } = 4;
    /// <summary>Tokens per pretraining sequence for PPO-ptx (at most the context).</summary>
    public int PtxLength { get; init; } = 64;
    public double LearningRate { get; init; } = 5e-5;
    public double ValueLearningRate { get; init; } = 1e-4;
    /// <summary>"reward": the value model starts as a copy of the reward model; "policy": the SFT backbone with a zero head.</summary>
    public string ValueInit { get; init; } = "reward";
    public double GradClip { get; init; } = 1.0;
    /// <summary>Iterated RLHF: rounds of (collect rankings with the current policy → retrain the reward model → PPO). 1 = plain PPO.</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>How each later round collects rankings.</summary>
    public CollectConfig RoundCollect { get; init; } = new() { Prompts = 300 };
    /// <summary>Reward-model training steps in each later round.</summary>
    public int RoundRewardSteps { get; init; } = 150;
    public int EvalInterval { get; init; } = 20;
    public int EvalPrompts { get; init; } = 64;
    public int CheckpointInterval { get; init; } = 20;

    public void Validate(string source)
    {
        void Check(bool ok, string key, object? v, string rule)
        {
            if (!ok) throw new ChatForgeException($"{source}: '{key}' = {v} is out of range ({rule})");
        }
        if (string.IsNullOrEmpty(Model)) throw new ChatForgeException($"{source}: 'model' (the SFT model, --sft) is required");
        if (string.IsNullOrEmpty(Reward)) throw new ChatForgeException($"{source}: 'reward' (the reward model, --reward) is required");
        Check(Iterations >= 1, "iterations", Iterations, "≥ 1");
        Check(RolloutBatch >= 1, "rollout_batch", RolloutBatch, "≥ 1");
        Check(MiniBatch >= 1 && MiniBatch <= RolloutBatch, "mini_batch", MiniBatch, "1 … rollout_batch");
        Check(PpoEpochs >= 1, "ppo_epochs", PpoEpochs, "≥ 1");
        Check(MaxNewTokens >= 1, "max_new_tokens", MaxNewTokens, "≥ 1");
        Check(Beta >= 0, "beta", Beta, "≥ 0");
        Check(AdaptiveKl is null || (AdaptiveKl.Target > 0 && AdaptiveKl.Horizon > 0), "adaptive_kl", AdaptiveKl, "target > 0, horizon > 0");
        Check(Gamma is >= 0 and <= 1, "gamma", Gamma, "0 ≤ γ ≤ 1");
        Check(Lambda is >= 0 and <= 1, "lambda", Lambda, "0 ≤ λ ≤ 1");
        Check(ClipRange > 0, "clip_range", ClipRange, "> 0");
        Check(ClipRangeValue > 0, "clip_range_value", ClipRangeValue, "> 0");
        Check(ScoreClip is null or > 0, "score_clip", ScoreClip, "> 0");
        Check(EarlyStopKl > 0, "early_stop_kl", EarlyStopKl, "> 0");
        Check(PtxCoef >= 0, "ptx_coef", PtxCoef, "≥ 0");
        Check(PtxBatch >= 1, "ptx_batch", PtxBatch, "≥ 1");
        Check(PtxLength >= 2, "ptx_length", PtxLength, "≥ 2");
        Check(LearningRate > 0, "learning_rate", LearningRate, "> 0");
        Check(ValueLearningRate > 0, "value_learning_rate", ValueLearningRate, "> 0");
        Check(ValueInit is "reward" or "policy", "value_init", ValueInit, "reward or policy");
        Check(Rounds >= 1, "rounds", Rounds, "≥ 1");
        Check(Task is "sentiment" or "hhh", "task", Task, "sentiment or hhh");
        if (Task == "hhh" && Prompts.Count > 0) throw new ChatForgeException($"{source}: 'task' hhh brings its own prompts; 'prompts' must be empty");
        if (Task == "hhh" && Rounds > 1 && RoundCollect.Task != "hhh")
            throw new ChatForgeException($"{source}: 'round_collect.task' = {RoundCollect.Task}: later rounds of task hhh must rank hhh responses");
        Alignment.Validate(source);
        Check(EvalInterval >= 0, "eval_interval", EvalInterval, "≥ 0");
        Check(EvalPrompts >= 1, "eval_prompts", EvalPrompts, "≥ 1");
        Check(CheckpointInterval >= 0, "checkpoint_interval", CheckpointInterval, "≥ 0");
        RoundCollect.Validate(source, "round_collect");
    }

    public static PpoConfig Demo => new();
    public static PpoConfig Tiny => new()
    {
        Iterations = 6, RolloutBatch = 8, MiniBatch = 4, PpoEpochs = 2, MaxNewTokens = 8, EvalInterval = 3, EvalPrompts = 4, CheckpointInterval = 3,
        PtxBatch = 2, LearningRate = 1e-4, RoundCollect = new CollectConfig { Prompts = 16, K = 3, MaxNewTokens = 8 }, RoundRewardSteps = 4,
    };

    public static PpoConfig Load(string? preset, string? file) => ConfigMerge.Load(preset, file, Demo, Tiny);
}
