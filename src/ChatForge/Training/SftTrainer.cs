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

/// <summary>A training row: one example, or several packed back to back.</summary>
public sealed record PackedRow(IReadOnlyList<EncodedExample> Segments)
{
    public int Length => Segments.Sum(s => s.Ids.Length);
}

/// <summary>
/// Supervised fine-tuning: next-token cross-entropy on the assistant's tokens only (the prompt and
/// template tokens are masked with -100), full fine-tuning or LoRA, optional packing. The loss of a
/// step is the mean over all of its trained tokens, whatever their split into micro-batches.
/// </summary>
public sealed class SftTrainer : ITrainable
{
    readonly SftConfig _c;
    readonly Gpt _model;
    readonly ITokenizer _tok;
    readonly List<PackedRow> _rows;
    readonly List<EncodedExample> _val;
    readonly Device _device;
    readonly EpochSampler _sampler;
    long _countStep = -1;
    double _stepCount;

    public SftTrainer(SftConfig c, Gpt model, ITokenizer tok, List<PackedRow> rows, List<EncodedExample> val)
    {
        _c = c; _model = model; _tok = tok; _rows = rows; _val = val;
        _device = model.TokenEmbedding.device;
        if (rows.Count == 0) throw new ChatForgeException("no SFT training examples");
        _sampler = new EpochSampler(rows.Count, c.Seed, c.Optim.BatchSize * c.Optim.GradAccum);
    }

    public nn.Module Model => _model;
    public string BestMetric => "val_loss";

    public IEnumerable<(string, Parameter)> TrainableParameters() =>
        Lora.HasAdapters(_model) ? Lora.Parameters(_model) : _model.named_parameters();

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
        var batch = Collate(rows, _tok.EosId(), _device);
        var logits = _model.Logits(_model.Hidden(batch.X, batch.Positions, batch.Mask));
        var (sum, count) = Losses.CrossEntropySum(logits, batch.Y);
        var loss = sum / Math.Max(1.0, _stepCount);
        return new MicroStepResult(loss, rows.Sum(r => (long)r.Length), LossScale: 1.0);
    }

    public IReadOnlyDictionary<string, double> Evaluate() => new Dictionary<string, double> { ["val_loss"] = ResponseLoss(_model, _tok, _val, _c.Optim.BatchSize) };

    /// <summary>Mean cross-entropy of the trained-on (response) tokens, nats per token.</summary>
    public static double ResponseLoss(Gpt model, ITokenizer tok, IReadOnlyList<EncodedExample> examples, int batch)
    {
        double nats = 0, n = 0;
        var device = model.TokenEmbedding.device;
        using var _ = no_grad();
        for (int i = 0; i < examples.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            var rows = examples.Skip(i).Take(batch).Select(e => new PackedRow(new[] { e })).ToList();
            var bt = Collate(rows, tok.EosId(), device);
            var (sum, count) = Losses.CrossEntropySum(model.Logits(model.Hidden(bt.X, bt.Positions, bt.Mask)), bt.Y);
            nats += sum.item<float>();
            n += count.item<long>();
        }
        return n == 0 ? double.NaN : nats / n;
    }

    public sealed record Batch(Tensor X, Tensor Y, Tensor? Positions, Tensor? Mask);

    /// <summary>
    /// Inputs and shifted targets, right-padded: target t is token t+1 where that token is trained on,
    /// else -100. Packed rows get positions that restart per segment and a block-diagonal causal mask.
    /// </summary>
    public static Batch Collate(IReadOnlyList<PackedRow> rows, int padId, Device device)
    {
        int t = rows.Max(r => r.Length) - 1;
        int b = rows.Count;
        var x = new long[b * t];
        var y = new long[b * t];
        var pos = new long[b * t];
        var seg = new int[b * t];
        bool packed = rows.Any(r => r.Segments.Count > 1);
        for (int r = 0; r < b; r++)
        {
            Array.Fill(x, padId, r * t, t);
            Array.Fill(y, Losses.IgnoreIndex, r * t, t);
            Array.Fill(seg, -1 - r, r * t, t); // padding: a segment of its own
            int off = 0, segId = 0;
            foreach (var s in rows[r].Segments)
            {
                for (int i = 0; i < s.Ids.Length && off + i < t; i++)
                {
                    x[r * t + off + i] = s.Ids[i];
                    pos[r * t + off + i] = i;
                    seg[r * t + off + i] = segId;
                    // The last token of a segment predicts nothing (the next segment is unrelated).
                    if (i + 1 < s.Ids.Length && s.Train[i + 1]) y[r * t + off + i] = s.Ids[i + 1];
                }
                off += s.Ids.Length;
                segId++;
            }
        }
        var X = tensor(x, new long[] { b, t }, device: device);
        var Y = tensor(y, new long[] { b, t }, device: device);
        if (!packed) return new Batch(X, Y, null, null);
        var S = tensor(seg.Select(v => (long)v).ToArray(), new long[] { b, t }, device: device);
        var same = S.unsqueeze(2).eq(S.unsqueeze(1));                                   // (B, T, T)
        var causal = ones(t, t, dtype: ScalarType.Bool, device: device).tril().unsqueeze(0);
        var mask = (same & causal).unsqueeze(1);                                         // (B, 1, T, T)
        return new Batch(X, Y, tensor(pos, new long[] { b, t }, device: device), mask);
    }

    /// <summary>Greedy first-fit packing into rows of at most <paramref name="maxLen"/> tokens, in the given order.</summary>
    public static List<PackedRow> Pack(IEnumerable<EncodedExample> examples, int maxLen)
    {
        var rows = new List<PackedRow>();
        var cur = new List<EncodedExample>();
        int len = 0;
        foreach (var e in examples)
        {
            if (len + e.Ids.Length > maxLen && cur.Count > 0) { rows.Add(new PackedRow(cur)); cur = new(); len = 0; }
            cur.Add(e); len += e.Ids.Length;
        }
        if (cur.Count > 0) rows.Add(new PackedRow(cur));
        return rows;
    }

    public void SaveModel(string dir) => Save(dir, _model, _tok, _c);

    /// <summary>Writes the model (LoRA merged into the weights) and, for LoRA, the PEFT adapter in adapter/.</summary>
    public static void Save(string dir, Gpt model, ITokenizer tok, SftConfig c)
    {
        var extra = new JsonObject { ["chatforge"] = new JsonObject { ["stage"] = "sft", ["base_model"] = c.Model } };
        if (Lora.HasAdapters(model))
        {
            HfCheckpoint.Write(dir, model, tok, configExtra: extra, mergeLora: true);
            Lora.Save(Path.Combine(dir, "adapter"), model, c.Lora!, c.Model);
        }
        else HfCheckpoint.Write(dir, model, tok, configExtra: extra);
    }

    public static Dictionary<string, object?> Run(SftConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("sft config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume, c.Seed, c.Deterministic, c.Threads, c.Device);

        // The model: the base (plus a fresh adapter), or, when resuming, the checkpoint.
        Gpt model; ITokenizer tok;
        if (resuming && c.Lora is not null)
        {
            (model, tok, _) = HfCheckpoint.Load(c.Model);
            Lora.Load(Path.Combine(run.ModelDir, "adapter"), model);
        }
        else if (resuming) (model, tok, _) = HfCheckpoint.Load(run.ModelDir);
        else
        {
            (model, tok, _) = HfCheckpoint.Load(c.Model);
            if (c.Lora is not null) Lora.Attach(model, c.Lora);
        }
        if (device.type != DeviceType.CPU) model.to(device);
        int maxLen = Math.Min(c.MaxLength ?? model.Config.NPositions, model.Config.NPositions);

        // Data.
        List<SftExample> train, val;
        DemoSuite? suite = null;
        if (c.Data.Count == 0)
        {
            suite = DemoSuite.Build(Pretrainer.OpenCorpora(c.Cache, log), split: Pretrainer.FindSplit(c.Model)?.Split);
            (train, val) = (suite.Train, suite.Validation);
            log?.Invoke($"demo instruction data: {train.Count} examples ({string.Join(", ", train.GroupBy(e => e.Source.Split('-')[0]).Select(g => $"{g.Count()} {g.Key}"))}), {val.Count} held out");
        }
        else
        {
            var all = c.Data.SelectMany(SftData.Load).ToList();
            if (c.ValData.Count > 0) { train = all; val = c.ValData.SelectMany(SftData.Load).ToList(); }
            else
            {
                train = all.Where((e, i) => DemoTasks.Unit(c.Seed, $"{i}") >= 0.05).ToList();
                val = all.Where((e, i) => DemoTasks.Unit(c.Seed, $"{i}") < 0.05).ToList();
                if (val.Count == 0) { val.Add(train[^1]); train.RemoveAt(train.Count - 1); }
            }
        }
        var encTrain = train.Select(e => SftData.Encode(tok, e, maxLen + 1)).ToList();
        var encVal = val.Select(e => SftData.Encode(tok, e, maxLen + 1)).Take(c.EvalExamples).ToList();
        int promptCut = encTrain.Count(e => e.PromptTruncated), answerCut = encTrain.Count(e => e.AnswerTruncated);
        if (promptCut + answerCut > 0) log?.Invoke($"truncated to {maxLen + 1} tokens: {promptCut} prompts (from the left), {answerCut} answers (from the right)");
        var rows = c.Packing
            ? Pack(encTrain.OrderBy(e => DemoTasks.Unit(c.Seed, "pack:" + string.Join(",", e.Ids.Take(16)))), maxLen + 1)
            : encTrain.Select(e => new PackedRow(new[] { e })).ToList();
        log?.Invoke($"{(c.Lora is null ? "full fine-tuning" : $"LoRA r={c.Lora.R} α={c.Lora.LoraAlpha} on {string.Join(", ", c.Lora.TargetModules)}")}: " +
                    $"{rows.Count} rows{(c.Packing ? $" packed from {encTrain.Count} examples" : "")}, {encTrain.Sum(e => e.Train.Count(t => t))} response tokens");

        var trainer = new SftTrainer(c, model, tok, rows, encVal);
        var final = TrainingLoop.Run(trainer, c.Optim, run, resuming, progress, cancel);
        if (c.Lora is not null) Lora.Save(Path.Combine(run.Root, "adapter"), model, c.Lora, c.Model);
        Plots.LossCurve(run.MetricsPath, run.Path_("loss.png"), "SFT loss (response tokens)");

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
        };
        if (c.EvalTasks && suite is not null)
        {
            log?.Invoke("task evaluation of the final model");
            var ev = TaskEval.Run(model, tok, suite, chat: true);
            foreach (var (k, v) in ev.Metrics) summary[k] = v;
            AtomicFile.WriteAllText(run.Path_("eval_samples.txt"), ev.SamplesText());
        }
        run.WriteSummary(summary);
        return summary;
    }
}
