using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Evaluation;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>Pretraining: next-token cross-entropy on raw text, random windows of block_size tokens.</summary>
public sealed class Pretrainer : ITrainable
{
    readonly PretrainConfig _c;
    readonly CausalLM _model;
    readonly TokenStream _train, _val;
    readonly ITokenizer _tok;
    readonly Device _device;
    readonly long[] _evalOffsets;
    readonly PretrainSplit _split;

    Pretrainer(PretrainConfig c, CausalLM model, ITokenizer tok, TokenStream train, TokenStream val, PretrainSplit split, Device device)
    {
        _c = c; _model = model; _tok = tok; _train = train; _val = val; _split = split; _device = device;
        _evalOffsets = val.EvalOffsets(c.Model.BlockSize, c.EvalBatches * c.Optim.BatchSize);
    }

    public nn.Module Model => _model;
    public string BestMetric => "val_loss";
    public IEnumerable<(string, Parameter)> TrainableParameters() => _model.named_parameters();

    public MicroStepResult MicroStep(long step, int micro, int microBatches)
    {
        int b = _c.Optim.BatchSize, t = _c.Model.BlockSize;
        var offsets = _train.RandomOffsets(_c.Seed, step, micro * b, b, t);
        var (x, y) = CausalBatch.Windows(_train, offsets, t, _device);
        var loss = Losses.CrossEntropy(_model.call(x), y);
        return new MicroStepResult(loss, (long)b * t);
    }

    public IReadOnlyDictionary<string, double> Evaluate() =>
        Perplexity.OnWindows(_model, _tok, _val, _evalOffsets, _c.Model.BlockSize, _c.Optim.BatchSize);

    /// <summary>The checkpoint, with split.json: a model copied out of the run still says which documents it was validated on.</summary>
    public void SaveModel(string dir)
    {
        HfCheckpoint.Write(dir, _model, _tok, configExtra: new System.Text.Json.Nodes.JsonObject { ["chatforge"] = new System.Text.Json.Nodes.JsonObject { ["stage"] = "pretrain" } });
        _split.Write(dir);
    }


    /// <summary>
    /// The facts the demo's instruction tasks draw on, for the training split: every state's capital and every
    /// AFINN word's sentiment in statement form, the seen states' quiz (mixed training) and copy drills over
    /// <paramref name="text"/> (the training split's prose), as configured.
    /// </summary>
    public static List<Document> KnowledgeDocuments(PretrainConfig c, IReadOnlyList<Document> text)
    {
        var docs = new List<Document>();
        var corpora = Corpora.OpenOrFetch(c.Cache);
        var states = DemoTasks.LoadCapitals(corpora.StatesCapitals);
        if (c.CapitalStatements > 0) docs.Add(PretrainKnowledge.CapitalFacts(states, c.CapitalStatements, c.Seed));
        if (c.WordStatements > 0)
            docs.Add(PretrainKnowledge.WordValences(DemoTasks.LoadAfinn(corpora.Afinn).Where(w => !w.Word.Contains(' ')).ToList(), c.WordStatements, c.Seed));
        if (c.CapitalQuiz > 0)
        {
            var (seen, _) = DemoTasks.SplitStates(states, DemoSuite.HeldOutStateCount, DemoSuite.TaskSeed);
            docs.Add(PretrainKnowledge.CapitalQuiz(seen, DemoTasks.CapitalTrainQuestions, c.CapitalQuiz, c.Seed));
        }
        if (c.CopyDrills > 0) docs.Add(PretrainKnowledge.CopyDrills(text, states, c.CopyDrills, c.Seed));
        return docs;
    }

    /// <summary>Loads the corpus, builds or resumes the tokenizer and model, trains, evaluates, writes the run directory.</summary>
    public static Dictionary<string, object?> Run(PretrainConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("pretrain config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume);
        if (resume && !resuming) log?.Invoke($"no checkpoint in {run.ModelDir}: starting from scratch");
        run.WriteConfig(c);

        var paths = c.Data.Count > 0 ? c.Data : DemoCorpus(c.Cache, log);
        var docs = TextCorpus.Load(paths);
        var (trainDocs, valDocs) = TextCorpus.Split(docs, c.ValFraction, c.Seed);
        var split = PretrainSplit.Of(trainDocs, valDocs, c.Seed, c.ValFraction);
        split.Write(run.Root);
        if (c.Data.Count == 0) trainDocs.AddRange(KnowledgeDocuments(c, trainDocs));
        log?.Invoke($"corpus: {docs.Count} documents ({trainDocs.Count} train, {valDocs.Count} validation) from {string.Join(", ", paths.Select(Path.GetFileName))}");

        ITokenizer tok;
        var tokDir = Path.Combine(run.Root, "tokenizer");
        if (resuming) tok = TokenizerFiles.Load(run.ModelDir);
        else if (c.Tokenizer.Path is { } tp) tok = TokenizerFiles.Load(tp);
        else if (c.Tokenizer.Kind == "bpe")
        {
            log?.Invoke($"training a {c.Tokenizer.VocabSize}-id byte-level BPE on the training split");
            tok = BpeTrainer.Train(trainDocs.Select(d => d.Text), c.Tokenizer.VocabSize, tokDir);
        }
        else tok = TokenizerFiles.Create(c.Tokenizer.Kind);

        var train = TokenStream.Encode(trainDocs, tok);
        var val = TokenStream.Encode(valDocs, tok);
        log?.Invoke($"tokens: {train.Tokens.Length:N0} train ({train.Bytes / (double)train.Tokens.Length:F2} bytes/token), {val.Tokens.Length:N0} validation; tokenizer {tok.Kind}, {tok.VocabSize} ids");

        CausalLM model;
        if (resuming)
        {
            (model, _, _) = HfCheckpoint.Load(run.ModelDir);
            log?.Invoke($"resuming from {run.ModelDir}");
        }
        else model = c.Model.Build(tok.VocabSize, tok.EosId(), tok.EosId());
        if (device.type != DeviceType.CPU) model.to(device);
        log?.Invoke($"model: {model.ModelType}, {c.Model.NLayer} layers × {model.HiddenSize} wide, {c.Model.NHead} heads, context {model.Context}, {model.ParameterCount:N0} parameters");

        var trainer = new Pretrainer(c, model, tok, train, val, split, device);
        var final = TrainingLoop.Run(trainer, c.Optim, run, resuming, progress, cancel);

        // Samples from the final model.
        var samples = new List<(string Prompt, string Completion)>();
        if (c.SampleTokens > 0)
        {
            var gen = new TextGenerator(model, tok);
            foreach (var p in c.SamplePrompts)
                samples.Add((p, gen.Complete(p, new SamplingOptions { MaxNewTokens = c.SampleTokens, Temperature = 0.8, TopK = 50, Seed = c.Seed }).Text));
            Util.AtomicFile.WriteAllText(run.PathOf("samples.txt"), string.Concat(samples.Select(s => $"### {s.Prompt}\n{s.Prompt}{s.Completion}\n\n")));
        }
        Plots.LossCurve(run.MetricsPath, run.PathOf("loss.png"), "Pretraining loss");

        var summary = new Dictionary<string, object?>
        {
            ["val_loss"] = final.GetValueOrDefault("val_loss"),
            ["val_perplexity"] = final.GetValueOrDefault("val_perplexity"),
            ["val_nats_per_byte"] = final.GetValueOrDefault("val_nats_per_byte"),
            ["val_bits_per_byte"] = final.GetValueOrDefault("val_nats_per_byte") / Math.Log(2),
            ["best_val_loss"] = final.GetValueOrDefault("best_val_loss"),
            ["train_loss"] = final.GetValueOrDefault("train_loss"),
            ["tokens_per_second"] = final.GetValueOrDefault("tokens_per_second"),
            ["train_tokens"] = (long)final.GetValueOrDefault("train_tokens"),
            ["steps"] = c.Optim.MaxSteps,
            ["wall_seconds"] = final.GetValueOrDefault("wall_seconds"),
            ["parameters"] = model.ParameterCount,
            ["tokenizer"] = tok.Kind,
            ["vocab_size"] = tok.VocabSize,
            ["bytes_per_token"] = train.Bytes / (double)train.Tokens.Length,
            ["train_documents"] = trainDocs.Count,
            ["val_documents"] = valDocs.Count,
            ["val_tokens"] = val.Tokens.Length,
            ["samples"] = samples.Select(s => new Dictionary<string, string> { ["prompt"] = s.Prompt, ["completion"] = s.Completion }).ToList(),
        };
        run.WriteSummary(summary);
        return summary;
    }

    /// <summary>
    /// The pretraining split behind a model: split.json in its directory (pretraining writes one into its run
    /// directory and every checkpoint), else behind the model its config.json names as chatforge.base_model
    /// (SFT → pretraining; PPO and DPO → SFT → …). <paramref name="path"/> may also be split.json itself or a
    /// pretraining run directory. Null when nothing along the chain has one.
    /// </summary>
    public static (PretrainSplit Split, string File)? FindSplit(string path)
    {
        if (File.Exists(path)) return (PretrainSplit.Read(path), path);
        var seen = new HashSet<string>();
        for (string? dir = path; dir is not null && seen.Add(Path.GetFullPath(dir)); dir = BaseModel(dir))
        {
            var file = Path.Combine(dir, PretrainSplit.FileName);
            if (File.Exists(file)) return (PretrainSplit.Read(file), file);
        }
        return null;
    }

    /// <summary>chatforge.base_model of a checkpoint's config.json (the model it was trained from), if any.</summary>
    static string? BaseModel(string dir)
    {
        var cfg = Path.Combine(dir, HfCheckpoint.ConfigFile);
        if (!File.Exists(cfg)) return null;
        try { return JsonNode.Parse(File.ReadAllText(cfg))?["chatforge"]?["base_model"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null; }
        catch (JsonException) { return null; }
    }

    /// <summary>The demo corpora, fetched into the cache on first use.</summary>
    /// <summary>Moby-Dick and the State of the Union addresses, fetched into the cache on first use.</summary>
    public static List<string> DemoCorpus(string? cache, Action<string>? log = null)
    {
        var corpora = Corpora.OpenOrFetch(cache, log);
        return new List<string> { corpora.MobyDick, corpora.Sotu };
    }
}
