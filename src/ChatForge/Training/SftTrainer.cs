using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>
/// Supervised fine-tuning: next-token cross-entropy on the assistant's tokens only (the prompt and
/// template tokens are masked with -100), full fine-tuning or LoRA, optional packing. The loss of a
/// step is the mean over all of its trained tokens, whatever their split into micro-batches.
/// </summary>
public sealed class SftTrainer : ITrainable
{
    /// <summary>The share of --data held out for the validation loss when no --val-data is given.</summary>
    public const double HeldOutFraction = 0.05;
    /// <summary>Packing order: examples are shuffled by a hash of (seed, their first this many token ids).</summary>
    const int PackingKeyTokens = 16;

    readonly SftConfig _c;
    readonly CausalLM _model;
    readonly ITokenizer _tok;
    readonly List<PackedRow> _rows;
    readonly List<EncodedExample> _val;
    readonly Device _device;
    readonly EpochSampler _sampler;
    long _countStep = -1;
    double _stepCount;

    public SftTrainer(SftConfig c, CausalLM model, ITokenizer tok, List<PackedRow> rows, List<EncodedExample> val)
    {
        _c = c; _model = model; _tok = tok; _rows = rows; _val = val;
        _device = model.TokenEmbedding.device;
        if (rows.Count == 0) throw new ChatForgeException("no SFT training examples");
        _sampler = new EpochSampler(rows.Count, c.Seed, c.Optim.BatchSize * c.Optim.GradAccum);
        if (c.FreezeEmbeddings && !Lora.HasAdapters(model))
            foreach (var (name, p) in model.named_parameters())
                if (model.EmbeddingParameters.Contains(name)) p.requires_grad = false;
    }

    public nn.Module Model => _model;
    public string BestMetric => "val_loss";

    public IEnumerable<(string, Parameter)> TrainableParameters() =>
        Lora.HasAdapters(_model) ? Lora.Parameters(_model)
        : _c.FreezeEmbeddings ? _model.named_parameters().Where(p => !_model.EmbeddingParameters.Contains(p.name))
        : _model.named_parameters();

    /// <summary>Row indices for positions [first, first+count) of step <paramref name="step"/>.</summary>
    public int[] RowIndices(long step, int first, int count) => _sampler.Indices(step, first, count);

    public MicroStepResult MicroStep(long step, int micro, int microBatches)
    {
        int b = _c.Optim.BatchSize;
        if (_countStep != step)
        {
            _stepCount = RowIndices(step, 0, b * microBatches).Sum(i => _rows[i].Segments.Sum(s => s.Train.Skip(1).Count(t => t)));
            _countStep = step;
        }
        var rows = RowIndices(step, micro * b, b).Select(i => _rows[i]).ToList();
        var batch = CausalBatch.Build(rows, _tok.EosId(), _device);
        var (sum, _) = LogProbs.CrossEntropySum(LogProbs.Logits(_model, batch), batch.Targets);
        var loss = sum / Math.Max(1.0, _stepCount);
        return new MicroStepResult(loss, rows.Sum(r => (long)r.Length), LossScale: 1.0);
    }

    public IReadOnlyDictionary<string, double> Evaluate() => new Dictionary<string, double> { ["val_loss"] = LogProbs.ResponseLoss(_model, _tok, _val, _c.Optim.BatchSize) };

    public void SaveModel(string dir) => Save(dir, _model, _tok, _c);

    /// <summary>Writes the model (LoRA merged into the weights) and, for LoRA, the PEFT adapter in adapter/.</summary>
    public static void Save(string dir, CausalLM model, ITokenizer tok, SftConfig c)
    {
        var extra = new JsonObject { ["chatforge"] = new JsonObject { ["stage"] = "sft", ["base_model"] = c.Model } };
        if (Lora.HasAdapters(model))
        {
            HfCheckpoint.Write(dir, model, tok, configExtra: extra, mergeLora: true);
            PeftAdapter.Save(Path.Combine(dir, "adapter"), model, c.Lora!, c.Model);
        }
        else HfCheckpoint.Write(dir, model, tok, configExtra: extra);
    }

    public static Dictionary<string, object?> Run(SftConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("sft config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume);
        PeakMemory.Reset(); // this run's own peak, also inside a longer process (the pipeline)

        // The model: the base (plus a fresh adapter), or, when resuming, the checkpoint.
        CausalLM model; ITokenizer tok;
        if (resuming && c.Lora is not null)
        {
            (model, tok, _) = HfCheckpoint.Load(c.Model);
            PeftAdapter.Load(Path.Combine(run.ModelDir, "adapter"), model);
        }
        else if (resuming) (model, tok, _) = HfCheckpoint.Load(run.ModelDir);
        else
        {
            (model, tok, _) = HfCheckpoint.Load(c.Model);
            if (c.Lora is not null) Lora.Attach(model, c.Lora, "sft config");
        }
        if (device.type != DeviceType.CPU) model.to(device);
        int maxLen = Math.Min(c.MaxLength ?? SftConfig.DefaultMaxLength, model.Context);

        // Data.
        List<SftExample> train, val;
        DemoSuite? suite = null;
        if (c.Data.Count == 0)
        {
            suite = DemoSuite.Build(Corpora.OpenOrFetch(c.Cache, log), split: Pretrainer.FindSplit(c.Model)?.Split, knowledgeExamples: c.KnowledgeExamples, alignment: c.Alignment);
            (train, val) = (suite.Train, suite.Validation);
            log?.Invoke($"demo instruction data: {train.Count} examples ({string.Join(", ", train.GroupBy(e => e.Source.Split('-')[0]).Select(g => $"{g.Count()} {g.Key}"))}), {val.Count} held out");
        }
        else
        {
            var all = c.Data.SelectMany(SftData.Load).ToList();
            if (c.ValData.Count > 0) { train = all; val = c.ValData.SelectMany(SftData.Load).ToList(); }
            else
            {
                var numbered = all.Select((e, i) => (e, i)).ToList();
                var (t, v) = HashSplit.Split(numbered, x => $"{x.i}", HeldOutFraction, c.Seed);
                (train, val) = (t.Select(x => x.e).ToList(), v.Select(x => x.e).ToList());
            }
        }
        var encTrain = train.Select(e => SftData.Encode(tok, e, maxLen + 1)).ToList();
        var encVal = val.Select(e => SftData.Encode(tok, e, maxLen + 1)).Take(c.EvalExamples).ToList();
        int promptCut = encTrain.Count(e => e.PromptTruncated), answerCut = encTrain.Count(e => e.AnswerTruncated);
        if (promptCut + answerCut > 0) log?.Invoke($"truncated to {maxLen + 1} tokens: {promptCut} prompts (from the left), {answerCut} answers (from the right)");
        var rows = c.Packing
            ? CausalBatch.Pack(encTrain.OrderBy(e => HashSplit.Unit(c.Seed, "pack:" + string.Join(",", e.Ids.Take(PackingKeyTokens)))), maxLen + 1)
            : encTrain.Select(e => new PackedRow(e)).ToList();
        log?.Invoke($"{(c.Lora is null ? "full fine-tuning" : $"LoRA r={c.Lora.R} α={c.Lora.LoraAlpha} on {string.Join(", ", Lora.AdaptedModules(model))}")}: " +
                    $"{rows.Count} rows{(c.Packing ? $" packed from {encTrain.Count} examples" : "")}, {encTrain.Sum(e => e.Train.Count(t => t))} response tokens");

        var trainer = new SftTrainer(c, model, tok, rows, encVal);
        var final = TrainingLoop.Run(trainer, c.TrainingOptim(), run, resuming, progress, cancel);
        if (c.Lora is not null) PeftAdapter.Save(Path.Combine(run.Root, "adapter"), model, c.Lora, c.Model);
        Plots.LossCurve(run.MetricsPath, run.PathOf("loss.png"), "SFT loss (response tokens)");

        var summary = new Dictionary<string, object?>
        {
            ["val_loss"] = final.GetValueOrDefault("val_loss"),
            ["best_val_loss"] = final.GetValueOrDefault("best_val_loss"),
            ["train_loss"] = final.GetValueOrDefault("train_loss"),
            ["tokens_per_second"] = final.GetValueOrDefault("tokens_per_second"),
            ["steps"] = c.Optim.MaxSteps,
            ["wall_seconds"] = final.GetValueOrDefault("wall_seconds"),
            ["train_examples"] = encTrain.Count,
            ["val_examples"] = encVal.Count,
            ["truncated_prompts"] = promptCut,
            ["truncated_answers"] = answerCut,
            ["packed_rows"] = c.Packing ? rows.Count : null,
            ["lora"] = c.Lora is not null,
            ["trainable_parameters"] = trainer.TrainableParameters().Sum(p => p.Item2.numel()),
            ["peak_rss_mb"] = PeakMemory.PeakRssMb(),
        };
        if (c.EvalTasks && suite is not null)
        {
            log?.Invoke("task evaluation of the final model");
            var ev = TaskEval.Run(model, tok, suite, chat: true, alignment: c.Alignment);
            foreach (var (k, v) in ev.Metrics) summary[k] = v;
            AtomicFile.WriteAllText(run.PathOf("eval_samples.txt"), ev.SamplesText());
        }
        run.WriteSummary(summary);
        return summary;
    }
}
