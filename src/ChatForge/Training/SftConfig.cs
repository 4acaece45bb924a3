using ChatForge.Modeling;
using ChatForge.Util;

namespace ChatForge.Training;

/// <summary>Instruction tuning (SFT): cross-entropy on the assistant's tokens only.</summary>
public sealed record SftConfig : RunOptions
{
    /// <summary>The pretrained model directory to start from.</summary>
    public string Model { get; init; } = "";
    /// <summary>SFT data: JSONL files in TRL's formats; empty means the demo's instruction mixture.</summary>
    public List<string> Data { get; init; } = new();
    /// <summary>Held-out data for the validation loss; empty means a 5% split of the data.</summary>
    public List<string> ValData { get; init; } = new();
    /// <summary>Sequence length; null means the model's context. Longer records are truncated (README: the rule).</summary>
    public int? MaxLength { get; init; }

    /// <summary>max_length when none is given (TRL's default), at most the model's context: a long-context checkpoint (8,192 to 131,072) is not packed to its whole context.</summary>
    public const int DefaultMaxLength = 1024;
    /// <summary>Pack several examples into each row (block-diagonal attention, positions restart per example).</summary>
    public bool Packing { get; init; } = true;
    /// <summary>LoRA instead of full fine-tuning (null: full).</summary>
    public LoraConfig? Lora { get; init; }
    /// <summary>
    /// With LoRA, training runs at <c>optim.learning_rate</c> and <c>optim.min_lr</c> times this: the adapters'
    /// few parameters (B starts at zero) want larger steps than full fine-tuning (1: the rates as given).
    /// </summary>
    public double LoraLrMultiplier { get; init; } = 4;
    /// <summary>
    /// Full fine-tuning leaves the token and position embeddings (and so the tied output layer) as pretraining
    /// left them: tokens the instruction data never has as answers (held-out states, their capitals) are not
    /// pushed down in every softmax. No effect under LoRA (its base weights are frozen anyway).
    /// </summary>
    public bool FreezeEmbeddings { get; init; }
    /// <summary>
    /// With the demo data: plain-text examples replaying pretraining's statement-form facts (capital paragraphs
    /// and lexicon lines, every state and word, never a question) mixed into the instruction data (0: none).
    /// </summary>
    public int KnowledgeExamples { get; init; }
    /// <summary>With the demo data: the refusal and abstention its alignment examples answer with (the pipeline passes its own <c>alignment</c>).</summary>
    public Data.AlignmentTexts Alignment { get; init; } = new();
    public OptimConfig Optim { get; init; } = new()
    {
        MaxSteps = 300, BatchSize = 16, LearningRate = 5e-4, MinLr = 5e-5, WarmupSteps = 20,
        EvalInterval = 100, CheckpointInterval = 100, LogInterval = 10, WeightDecay = 0.0,
    };
    /// <summary>Validation examples per evaluation.</summary>
    public int EvalExamples { get; init; } = 256;
    /// <summary>Run the task evaluation (capitals, spam, sentiment) on the final model.</summary>
    public bool EvalTasks { get; init; } = true;

    public void Validate(string source)
    {
        if (string.IsNullOrEmpty(Model)) throw new ChatForgeException($"{source}: 'model' (the pretrained model directory, --model) is required");
        if (MaxLength is < 8) throw new ChatForgeException($"{source}: 'max_length' = {MaxLength} is out of range (≥ 8)");
        if (EvalExamples < 1) throw new ChatForgeException($"{source}: 'eval_examples' = {EvalExamples} is out of range (≥ 1)");
        if (KnowledgeExamples < 0) throw new ChatForgeException($"{source}: 'knowledge_examples' = {KnowledgeExamples} is out of range (≥ 0)");
        if (LoraLrMultiplier <= 0) throw new ChatForgeException($"{source}: 'lora_lr_multiplier' = {LoraLrMultiplier} is out of range (> 0)");
        Lora?.Validate(source);
        Alignment.Validate(source);
        Optim.Validate(source);
    }

    /// <summary>The optimizer settings training runs with: <see cref="Optim"/>, its rates times <see cref="LoraLrMultiplier"/> under LoRA.</summary>
    public OptimConfig TrainingOptim() =>
        Lora is null ? Optim : Optim with { LearningRate = Optim.LearningRate * LoraLrMultiplier, MinLr = Optim.MinLr * LoraLrMultiplier };

    public static SftConfig Demo => new();

    public static SftConfig Tiny => new()
    {
        Optim = new OptimConfig { MaxSteps = 20, BatchSize = 4, LearningRate = 3e-3, MinLr = 3e-4, WarmupSteps = 2, EvalInterval = 10, CheckpointInterval = 10, LogInterval = 5, WeightDecay = 0 },
        EvalExamples = 16,
        EvalTasks = false,
    };

    public static SftConfig Load(string? preset, string? file) => ConfigMerge.Load(preset, file, Demo, Tiny);
}
