using System.Diagnostics;
using System.Text.Json;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Training;
using ChatForge.Util;

namespace ChatForge.Pipeline;

/// <summary>Extra PPO and DPO runs for the reward–KL frontier, and the two PPO ablations.</summary>
public sealed record FrontierConfig
{
    /// <summary>KL coefficients β for extra PPO runs (the main PPO run is a point too).</summary>
    public List<double> PpoBetas { get; init; } = new() { 0.03, 0.3 };
    /// <summary>β values for extra DPO runs (the main DPO run is a point too).</summary>
    public List<double> DpoBetas { get; init; } = new() { 0.03, 0.3 };
    /// <summary>PPO iterations of each extra run.</summary>
    public int PpoIterations { get; init; } = 20;
    /// <summary>DPO steps of each extra run.</summary>
    public int DpoSteps { get; init; } = 80;
    /// <summary>PPO iterations of each ablation run.</summary>
    public int AblationIterations { get; init; } = 30;
    /// <summary>Also run PPO with γ = 0 (no pretraining term) and with β = 0 (no KL penalty: reward hacking).</summary>
    public bool Ablations { get; init; } = true;
}

/// <summary>Every stage's config as a pipeline run uses it (see <see cref="PipelineConfig.Resolve"/>).</summary>
public sealed record ResolvedStages(PretrainConfig Pretrain, SftConfig Sft, SftConfig? SftLora, RewardConfig Reward, PpoConfig Ppo, DpoConfig Dpo, List<FrontierRun> Frontier);

/// <summary>One run of the frontier stage, in its own sub-directory <see cref="Name"/>: a PPO or a DPO run.</summary>
public sealed record FrontierRun(string Name, PpoConfig? Ppo, DpoConfig? Dpo);

/// <summary>
/// `chatforge pipeline`: every stage on the embedded defaults. Each stage's run directory sits in the
/// pipeline directory; a stage whose summary.json exists is complete and skipped, so a killed pipeline
/// continues where it stopped (a stage in progress resumes from its own checkpoint).
/// </summary>
public sealed record PipelineConfig : RunOptions
{
    /// <summary>
    /// What the reward, PPO, DPO and best-of-N stages align the assistant to, and what the report measures them by:
    /// "hhh" (helpful, honest, harmless chat answers: the alignment task's rankings, iterated PPO rounds; the default) or
    /// "sentiment" (positive continuations of text, the DPO paper's IMDb set-up, with the reward–KL frontier stage; preset
    /// `sentiment`). It sets reward.collect.task, ppo.task and ppo.round_collect.task.
    /// </summary>
    public string Task { get; init; } = "hhh";
    public PretrainConfig Pretrain { get; init; } = PretrainConfig.Demo with
    {
        Optim = PretrainConfig.Demo.Optim with { MaxSteps = 950, EvalInterval = 250, CheckpointInterval = 250 },
        SamplePrompts = new() { "Call me" },
    };
    /// <summary>SFT rows of 128 tokens: every demo example but a few long emails fits, at half the cost of the model's 256.</summary>
    public SftConfig Sft { get; init; } = SftConfig.Demo with { EvalTasks = false, MaxLength = 128 };
    /// <summary>
    /// The sft_lora stage: the same SFT (data, steps, schedule) with these LoRA adapters instead of full
    /// fine-tuning, reported beside it (null: no such stage). A LoRA setting in <see cref="Sft"/> itself is not changed by this.
    /// Rank 32, α 64: rank 8 answered 0.12 of the held-out capital questions, rank 32 0.38–0.48 (README, "How the default was chosen").
    /// </summary>
    public LoraConfig? SftLora { get; init; } = new() { R = 32, LoraAlpha = 64 };
    /// <summary>
    /// Which SFT model the later stages (reward, PPO, DPO, best-of-N) start from: "sft" or "sft_lora". The LoRA model:
    /// it answers some held-out questions that the full fine-tune answers with a seen state's sentence.
    /// </summary>
    public string MainSft { get; init; } = "sft_lora";
    /// <summary>
    /// 1,600 rankings of 4 responses over the four kinds of alignment prompt in equal shares, 160 steps (2,000 and 200
    /// before conversations joined the prompts and made them longer: the pipeline took 33 minutes).
    /// </summary>
    public RewardConfig Reward { get; init; } = RewardConfig.Demo with
    {
        Collect = RewardConfig.Demo.Collect with { Task = "hhh", K = 4, Prompts = 1600 },
        Optim = RewardConfig.Demo.Optim with { MaxSteps = 160 },
    };
    /// <summary>
    /// Two rounds of PPO-ptx on the alignment task, each later round on fresh rankings of the current policy and a reward
    /// model retrained on all rankings so far. β 0.5: at β 0.1 the policy collapsed to the abstention (README, issue 12).
    /// </summary>
    public PpoConfig Ppo { get; init; } = PpoConfig.Demo with
    {
        Task = "hhh", PtxCoef = 1.0, Beta = 0.5, Rounds = 2, Iterations = 32, RoundRewardSteps = 120, EvalInterval = 32,
        RoundCollect = new CollectConfig { Task = "hhh", K = 4, Prompts = 300 },
    };
    /// <summary>110 steps on the reward stage's rankings (150 in the sentiment preset).</summary>
    public DpoConfig Dpo { get; init; } = DpoConfig.Demo with { Optim = DpoConfig.Demo.Optim with { MaxSteps = 110 } };
    public List<int> BestOfN { get; init; } = new() { 1, 2, 4, 8 };
    /// <summary>The reward–KL frontier's extra runs (task sentiment only).</summary>
    public FrontierConfig Frontier { get; init; } = new() { PpoIterations = 8, DpoSteps = 40, AblationIterations = 10 };
    /// <summary>The refusal and abstention texts the helpful–honest–harmless criteria rank (report.json: refusal_text, abstain_text).</summary>
    public Data.AlignmentTexts Alignment { get; init; } = new();
    /// <summary>Held-out sentiment prompts for every model's evaluation.</summary>
    public int EvalPrompts { get; init; } = 64;

    public static readonly string[] Stages = { "data", "pretrain", "sft", "sft_lora", "reward", "ppo", "dpo", "bon", "frontier", "report" };

    /// <summary>
    /// Checks every stage's config as the pipeline will run it (<see cref="Resolve"/>), so a bad value for
    /// a late stage fails at once, naming the stage and key, not after minutes of the stages before it.
    /// </summary>
    public void Validate(string source)
    {
        if (Task is not ("hhh" or "sentiment")) throw new ChatForgeException($"{source}: 'task' = {Task} (hhh, sentiment)");
        if (BestOfN.Count == 0 || BestOfN.Any(n => n < 1)) throw new ChatForgeException($"{source}: 'best_of_n' must list values ≥ 1");
        if (MainSft is not ("sft" or "sft_lora")) throw new ChatForgeException($"{source}: 'main_sft' = '{MainSft}' must be sft or sft_lora");
        if (MainSft == "sft_lora" && SftLora is null) throw new ChatForgeException($"{source}: 'main_sft' is sft_lora but 'sft_lora' is null");
        Alignment.Validate(source);
        if (EvalPrompts < 1) throw new ChatForgeException($"{source}: 'eval_prompts' = {EvalPrompts} is out of range (≥ 1)");
        if (Threads is < 1) throw new ChatForgeException($"{source}: 'threads' = {Threads} is out of range (≥ 1)");
        if (Frontier.PpoBetas.Any(b => b < 0) || Frontier.DpoBetas.Any(b => b <= 0)) throw new ChatForgeException($"{source}: 'frontier' betas must be positive");
        if (Frontier.PpoIterations < 1) throw new ChatForgeException($"{source}: 'frontier.ppo_iterations' = {Frontier.PpoIterations} is out of range (≥ 1)");
        if (Frontier.DpoSteps < 1) throw new ChatForgeException($"{source}: 'frontier.dpo_steps' = {Frontier.DpoSteps} is out of range (≥ 1)");
        if (Frontier.AblationIterations < 1) throw new ChatForgeException($"{source}: 'frontier.ablation_iterations' = {Frontier.AblationIterations} is out of range (≥ 1)");
        var r = Resolve("pipeline");   // the directories do not matter here, only the values
        r.Pretrain.Validate(source + " (pretrain)");
        r.Sft.Validate(source + " (sft)");
        r.SftLora?.Validate(source + " (sft_lora)");
        r.Reward.Validate(source + " (reward)");
        r.Ppo.Validate(source + " (ppo)");
        r.Dpo.Validate(source + " (dpo)");
        foreach (var run in r.Frontier)
        {
            run.Ppo?.Validate($"{source} (frontier {run.Name})");
            run.Dpo?.Validate($"{source} (frontier {run.Name})");
        }
    }

    /// <summary>
    /// Each stage's config as the pipeline runs it under <paramref name="root"/>: the pipeline's run options
    /// (seed, cache, device, threads), and the models and data of the stages before it.
    /// </summary>
    public ResolvedStages Resolve(string root)
    {
        string Model(string stage) => Path.Combine(PipelineRunner.StageDir(root, stage == "sft" ? MainSft : stage), "model");
        var sft = AppliedTo(Sft) with { Model = Path.Combine(PipelineRunner.StageDir(root, "pretrain"), "model"), Alignment = Alignment };
        var ppo = AppliedTo(Ppo) with
        {
            Model = Model("sft"), Reward = Model("reward"), EvalPrompts = EvalPrompts, Task = Task, Alignment = Alignment,
            RoundCollect = Ppo.RoundCollect with { Task = Task, Alignment = Alignment },
        };
        var dpo = AppliedTo(Dpo) with
        {
            Model = Model("sft"), Data = new() { Path.Combine(PipelineRunner.StageDir(root, "reward"), "rankings.jsonl") }, Reward = Model("reward"),
            EvalPrompts = EvalPrompts,
        };
        var frontier = new List<FrontierRun>();
        if (Task == "sentiment") AddFrontier(frontier, ppo, dpo);
        return new ResolvedStages(
            AppliedTo(Pretrain),
            sft, SftLora is null ? null : sft with { Lora = SftLora },
            AppliedTo(Reward) with { Model = Model("sft"), Collect = Reward.Collect with { Task = Task, Alignment = Alignment } },
            ppo, dpo, frontier);
    }

    void AddFrontier(List<FrontierRun> frontier, PpoConfig ppo, DpoConfig dpo)
    {
        frontier.AddRange(Frontier.PpoBetas.Select(b => new FrontierRun($"ppo_beta{b}", ppo with { Beta = b, Iterations = Frontier.PpoIterations }, null)));
        frontier.AddRange(Frontier.DpoBetas.Select(b => new FrontierRun($"dpo_beta{b}", null, dpo with { Beta = b, Optim = dpo.Optim with { MaxSteps = Frontier.DpoSteps } })));
        if (Frontier.Ablations)
        {
            frontier.Add(new FrontierRun("ppo_no_ptx", ppo with { PtxCoef = 0, Iterations = Frontier.AblationIterations }, null));
            frontier.Add(new FrontierRun("ppo_beta0", ppo with { Beta = 0, AdaptiveKl = null, Iterations = Frontier.AblationIterations }, null));
        }
    }

    public static PipelineConfig Demo => new();

    /// <summary>
    /// The preset `sentiment`: the pipeline before the alignment task, the DPO paper's set-up: rankings of sentence
    /// continuations by the lexicon's sentiment, one PPO run at β 0.1, and the reward–KL frontier of PPO, DPO and best-of-N.
    /// </summary>
    public static PipelineConfig Sentiment => new()
    {
        Task = "sentiment",
        Reward = RewardConfig.Demo with
        {
            Collect = RewardConfig.Demo.Collect with { Prompts = 2500 },
            Optim = RewardConfig.Demo.Optim with { MaxSteps = 200 },
        },
        Ppo = PpoConfig.Demo with { PtxCoef = 1.0 },
        Dpo = DpoConfig.Demo,
        BestOfN = new() { 1, 2, 4, 8, 16 },
    };

    /// <summary>Every stage, minutes of nothing: for tests and smoke runs.</summary>
    public static PipelineConfig Tiny => new()
    {
        Pretrain = PretrainConfig.Tiny with { Model = PretrainConfig.Tiny.Model with { BlockSize = 96 }, CapitalStatements = 1, SampleTokens = 0 },
        Sft = SftConfig.Tiny with { EvalTasks = false },
        SftLora = new LoraConfig(),   // rank 8: the tiny model is 32 wide
        Reward = RewardConfig.Tiny,
        Ppo = PpoConfig.Tiny with { PtxCoef = 0.5, Rounds = 2, Iterations = 3 },
        Dpo = DpoConfig.Tiny,
        BestOfN = new() { 1, 2 },
        Frontier = new FrontierConfig { PpoBetas = new() { 0.3 }, DpoBetas = new() { 0.3 }, PpoIterations = 2, DpoSteps = 2, AblationIterations = 2 },
        EvalPrompts = 4,
    };

    public static readonly string[] Presets = { "demo", "sentiment", "tiny" };

    /// <summary>The named preset (demo when null, sentiment or tiny), overlaid with <paramref name="file"/> when given.</summary>
    public static PipelineConfig Load(string? preset, string? file) => preset switch
    {
        null or "demo" or "tiny" => ConfigMerge.Load(preset, file, Demo, Tiny),
        "sentiment" => ConfigMerge.Load(null, file, Sentiment, Tiny),
        _ => throw new ChatForgeException($"unknown preset '{preset}' ({string.Join(", ", Presets)})"),
    };
}

public static class PipelineRunner
{
    public static string StageDir(string root, string stage) => Path.Combine(root, stage);

    public static bool IsComplete(string root, string stage) => File.Exists(Path.Combine(StageDir(root, stage), "summary.json"));

    /// <summary>Runs the pipeline; returns the report's JSON path.</summary>
    public static string Run(PipelineConfig c, string outDir, string? from = null, Action<string>? log = null,
                             Action<string, TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("pipeline config");
        var root = Path.GetFullPath(outDir);
        Directory.CreateDirectory(root);
        if (from is not null)
        {
            int i = Array.IndexOf(PipelineConfig.Stages, from);
            if (i < 0) throw new ChatForgeException($"--from must be one of {string.Join(", ", PipelineConfig.Stages)}, got '{from}'");
            foreach (var s in PipelineConfig.Stages.Skip(i))
                if (Directory.Exists(StageDir(root, s))) Directory.Delete(StageDir(root, s), recursive: true);
        }
        AtomicFile.WriteAllText(Path.Combine(root, "pipeline_config.json"), Json.Serialize(c));
        var r = c.Resolve(root);
        string Dir(string stage) => StageDir(root, stage);
        string Model(string s) => Path.Combine(Dir(s), "model");
        Action<TrainingProgress>? ProgressOf(string stage) => progress is null ? null : p => progress(stage, p);

        void Stage(string name, Action body)
        {
            cancel.ThrowIfCancellationRequested();
            if (IsComplete(root, name)) { log?.Invoke($"[{name}] complete, skipped"); return; }
            log?.Invoke($"[{name}] running");
            var sw = Stopwatch.StartNew();
            body();
            var timeFile = Path.Combine(Dir(name), "stage_time.json");
            double before = File.Exists(timeFile) ? JsonDocument.Parse(File.ReadAllText(timeFile)).RootElement.GetProperty("wall_seconds").GetDouble() : 0;
            AtomicFile.WriteAllText(timeFile, JsonSerializer.Serialize(new { wall_seconds = before + sw.Elapsed.TotalSeconds }));
            log?.Invoke($"[{name}] done in {sw.Elapsed:mm\\:ss}");
        }

        Stage("data", () =>
        {
            var corpora = Corpora.OpenOrFetch(c.Cache, log);
            new RunDirectory(Dir("data")).WriteSummary(new Dictionary<string, object?> { ["root"] = corpora.Root });
        });
        Stage("pretrain", () => Pretrainer.Run(r.Pretrain, Dir("pretrain"), resume: true, log, ProgressOf("pretrain"), cancel));
        Stage("sft", () => SftTrainer.Run(r.Sft, Dir("sft"), resume: true, log, ProgressOf("sft"), cancel));
        Stage("sft_lora", () =>
        {
            if (r.SftLora is null) new RunDirectory(Dir("sft_lora")).WriteSummary(new Dictionary<string, object?> { ["skipped"] = true });
            else SftTrainer.Run(r.SftLora, Dir("sft_lora"), resume: true, log, ProgressOf("sft_lora"), cancel);
        });
        Stage("reward", () => RewardTrainer.Run(r.Reward, Dir("reward"), resume: true, log, ProgressOf("reward"), cancel));
        Stage("ppo", () => PpoTrainer.Run(r.Ppo, Dir("ppo"), resume: true, log, ProgressOf("ppo"), cancel));
        Stage("dpo", () => DpoTrainer.Run(r.Dpo, Dir("dpo"), resume: true, log, ProgressOf("dpo"), cancel));
        Stage("bon", () =>
        {
            var device = Native.TorchRuntime.ResolveDevice(c.Device);
            var corpora = Corpora.OpenOrFetch(c.Cache, log);
            var (policy, tok, _) = Checkpoints.HfCheckpoint.Load(Model(c.MainSft), device);
            var (rm, _) = RewardCheckpoint.Load(Model("reward"), device);
            var sampling = new Generation.SamplingOptions { Temperature = 1.0, MaxNewTokens = c.Ppo.MaxNewTokens, Seed = c.Seed };
            if (c.Task == "hhh")
            {
                // The held-out prompts the report's greedy evaluation asks, answered by the best of N samples.
                var suite = DemoSuite.Build(corpora);
                var prompts = AlignmentTasks.EvalSet(AlignmentTasks.Build(suite));
                var points = BestOfNEval.AlignmentCurve(policy, rm, tok, new AlignmentOracle(c.Alignment, suite.States), prompts, c.BestOfN, sampling);
                BestOfNStage.Write(new RunDirectory(Dir("bon")), points, "oracle_alignment");
            }
            else
            {
                var prompts = SentimentPrompts.Build(corpora).Eval.Take(c.EvalPrompts).ToList();
                BestOfNStage.Write(new RunDirectory(Dir("bon")), BestOfNEval.Curve(policy, rm, tok, SentimentOracle.FromCorpora(corpora), prompts, c.BestOfN, sampling));
            }
        });
        Stage("frontier", () =>
        {
            // Sub-runs resume individually; the stage is complete when all of them are.
            foreach (var run in r.Frontier)
            {
                var dir = Path.Combine(Dir("frontier"), run.Name);
                if (File.Exists(Path.Combine(dir, "summary.json"))) continue;
                log?.Invoke($"[frontier] {run.Name}");
                if (run.Ppo is not null) PpoTrainer.Run(run.Ppo, dir, true, log, ProgressOf("frontier"), cancel);
                else
                {
                    // Same pairs, same reference model: reuse the main DPO run's cached reference log-probabilities.
                    var cached = Path.Combine(Dir("dpo"), "reference_logps.safetensors");
                    Directory.CreateDirectory(dir);
                    if (File.Exists(cached) && !File.Exists(Path.Combine(dir, "reference_logps.safetensors")))
                        File.Copy(cached, Path.Combine(dir, "reference_logps.safetensors"));
                    DpoTrainer.Run(run.Dpo!, dir, true, log, ProgressOf("frontier"), cancel);
                }
            }
            new RunDirectory(Dir("frontier")).WriteSummary(new Dictionary<string, object?>
            {
                ["runs"] = r.Frontier.Select(x => x.Name).ToList(),
                ["note"] = r.Frontier.Count == 0 ? "the reward–KL frontier runs with task sentiment (preset sentiment)" : null,
            });
        });
        Stage("report", () => Report.Write(root, c, log));
        return Path.Combine(Dir("report"), "report.json");
    }
}
