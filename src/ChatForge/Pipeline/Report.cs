using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Training;
using ChatForge.Util;

namespace ChatForge.Pipeline;

/// <summary>
/// The pipeline's report: every model (base, SFT, RM-guided best-of-N, PPO, DPO) measured the same way,
/// the reward–KL frontier of PPO, DPO and best-of-N, side-by-side answers, and the curves of every
/// stage. Written as report.md and report.json (same numbers) in the pipeline's report/ directory.
/// </summary>
public static class Report
{
    public static readonly string[] ModelKeys = { "base", "sft", "sft_lora", "best_of_n", "ppo", "dpo" };

    /// <summary>The task accuracies of every chat model's row (TaskEval's keys).</summary>
    public static readonly string[] AccuracyKeys =
        { "capitals_heldout_accuracy", "capitals_seen_accuracy", "capitals_unseen_phrasing_accuracy", "multiturn_accuracy", "spam_accuracy", "word_sentiment_accuracy" };

    /// <summary>The cost of an SFT run, from its summary, in the sft and sft_lora rows.</summary>
    public static readonly string[] SftCostKeys = { "trainable_parameters", "wall_seconds", "peak_rss_mb" };

    /// <summary>What every model is measured with: the demo tasks, the held-out prompts and oracle, the SFT reference, the reward model, held-out pretraining text.</summary>
    sealed record Bench(DemoSuite Suite, SentimentOracle Oracle, List<string> Prompts, Gpt Sft, ITokenizer Tokenizer, RewardModel Rm,
                        TokenStream PretrainVal, TorchSharp.torch.Device Device);

    /// <summary>An answer of one model to one prompt, for the side-by-side section.</summary>
    sealed record Answer(string Model, string Prompt, string Text);

    /// <summary>Sampled continuations and greedy capital answers shown per model.</summary>
    const int SamplePrompts = 3, CapitalQuestions = 2, CapitalAnswerTokens = 20;

    /// <summary>The alignment prompt kinds shown side by side, one held-out prompt each.</summary>
    static readonly string[] AlignmentSampleKinds = { "harmful", "benign", "unknowable", "knowable" };

    public static void Write(string root, PipelineConfig c, Action<string>? log)
    {
        var dir = Path.Combine(root, "report");
        Directory.CreateDirectory(dir);
        var bench = Prepare(root, c, log);
        var (models, answers) = EvaluateModels(root, c, bench, log);

        // Best-of-N: the SFT policy with the reward model choosing among N samples (largest N of the bon stage).
        var bon = RunDirectory.ReadSummary(Path.Combine(root, "bon", "summary.json"));
        var ns = bon["n"].EnumerateArray().Select(x => x.GetInt32()).ToList();
        models["best_of_n"] = BestOfNRow(bon, ns.Count - 1);
        answers.AddRange(BestOfNAnswers(c, bench, ns[^1]));

        var frontier = Frontier(root, c, bon, ns);
        var (verdict, detail) = Dominance(frontier);
        double wall = PipelineConfig.Stages.Where(s => s != "report").Sum(s => StageSeconds(root, s));
        var rmSummary = RunDirectory.ReadSummary(Path.Combine(root, "reward", "summary.json"));
        var report = new JsonObject
        {
            ["models"] = models,
            ["main_sft"] = c.MainSft,
            ["refusal_text"] = c.Alignment.RefusalText,
            ["abstain_text"] = c.Alignment.AbstainText,
            ["reward_model"] = new JsonObject
            {
                ["heldout_accuracy"] = Num(rmSummary, "heldout_accuracy"),
                ["heldout_labeler_accuracy"] = Num(rmSummary, "heldout_labeler_accuracy"),
                ["labeler_agreement"] = Num(rmSummary, "labeler_agreement"),
                ["heldout_accuracy_by_family"] = rmSummary.TryGetValue("heldout_accuracy_by_family", out var fam) ? JsonNode.Parse(fam.GetRawText()) : null,
            },
            ["frontier"] = frontier,
            ["dpo_vs_ppo"] = verdict,
            ["ablations"] = Ablations(root),
            ["best_of_n_overoptimization"] = bon["overoptimization"].GetBoolean(),
            ["wall_seconds"] = wall,
        };
        var o = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        FrontierPlot(Path.Combine(dir, "frontier.png"), frontier);
        AtomicFile.WriteAllText(Path.Combine(dir, "report.md"), Markdown(root, report, answers, detail, bon));
        AtomicFile.WriteAllText(Path.Combine(dir, "report.json"), report.ToJsonString(o));
        new RunDirectory(dir).WriteSummary(new Dictionary<string, object?> { ["report"] = Path.Combine(dir, "report.json"), ["wall_seconds"] = wall });
    }

    static string ModelDir(string root, string stage) => Path.Combine(root, stage, "model");

    /// <summary>
    /// The measuring bench. The held-out pretraining text is the one PPO measures its pretraining loss on:
    /// pretraining's recorded split (split.json), found as PPO finds it.
    /// </summary>
    static Bench Prepare(string root, PipelineConfig c, Action<string>? log)
    {
        var device = Native.TorchRuntime.ResolveDevice(c.Device);
        var corpora = Corpora.OpenOrFetch(c.Cache, log);
        var (sft, tok, _) = HfCheckpoint.Load(ModelDir(root, c.MainSft), device);
        var (rm, _) = RewardCheckpoint.Load(ModelDir(root, "reward"), device);
        var (_, valDocs) = PpoTrainer.PretrainDocuments(c.Resolve(root).Ppo, corpora, log);
        return new Bench(DemoSuite.Build(corpora), SentimentOracle.FromCorpora(corpora), SentimentPrompts.Build(corpora).Eval.Take(c.EvalPrompts).ToList(),
                         sft, tok, rm, TokenStream.Encode(valDocs, tok), device);
    }

    /// <summary>The base, SFT, PPO and DPO models measured the same way, and their answers to the same prompts.</summary>
    static (JsonObject Models, List<Answer> Answers) EvaluateModels(string root, PipelineConfig c, Bench b, Action<string>? log)
    {
        var models = new JsonObject();
        var answers = new List<Answer>();
        int maxNew = c.Ppo.MaxNewTokens;
        var samplePrompts = b.Prompts.Take(SamplePrompts).ToList();
        var capitalQs = b.Suite.HeldOutStates.Take(CapitalQuestions).Select(s => string.Format(CultureInfo.InvariantCulture, DemoTasks.CapitalQuestions[0], s.State)).ToList();
        foreach (var key in new[] { "base", "sft", "sft_lora", "ppo", "dpo" })
        {
            var dir = ModelDir(root, key == "base" ? "pretrain" : key);
            if (!Directory.Exists(dir)) continue; // sft_lora switched off
            log?.Invoke($"[report] evaluating {key}");
            var (m, mtok, _) = key == c.MainSft ? (b.Sft, b.Tokenizer, null!) : HfCheckpoint.Load(dir, b.Device);
            bool chat = key != "base";
            var tasks = TaskEval.Run(m, mtok, b.Suite, chat, alignment: c.Alignment);
            var pol = PolicyEval.Run(m, b.Sft, mtok, b.Prompts, b.Oracle, b.Rm, maxNew, c.Seed);
            var row = Row(tasks.Metrics, pol, Perplexity.PretrainLoss(m, b.PretrainVal));
            foreach (var k in TaskEval.AlignmentKeys) row[k] = FiniteOrNull(tasks.Metrics[k]);
            row["capitals_heldout_by_phrasing"] = new JsonObject(tasks.ByPhrasing.Select(kv => KeyValuePair.Create(PhrasingKey(kv.Key), (JsonNode?)JsonValue.Create(kv.Value))));
            if (key is "sft" or "sft_lora")
            {
                var summary = RunDirectory.ReadSummary(Path.Combine(root, key, "summary.json"));
                foreach (var k in SftCostKeys) row[k] = Num(summary, k);
            }
            models[key] = row;
            var gen = new TextGenerator(m, mtok);
            foreach (var p in samplePrompts)
                answers.Add(new Answer(key, p, gen.Complete(p, new SamplingOptions { Temperature = 1.0, MaxNewTokens = maxNew, Seed = c.Seed }).Text));
            foreach (var q in capitalQs)
            {
                var ids = ChatTemplate.EncodePrompt(mtok, chat ? q : q + "\n", chat);
                var greedy = new SamplingOptions
                {
                    Temperature = 0, MaxNewTokens = CapitalAnswerTokens,
                    StopTokenIds = chat ? new[] { mtok.Id(SpecialTokens.ImEnd) } : Array.Empty<int>(), StopStrings = chat ? Array.Empty<string>() : new[] { "\n" },
                };
                answers.Add(new Answer(key, q, gen.Generate(new[] { ids }, greedy)[0].Text));
            }
            // One held-out prompt of each alignment kind, as the evaluation asked it (greedy).
            foreach (var kind in AlignmentSampleKinds)
                if (tasks.Samples.FirstOrDefault(x => x.Task == kind) is { } smp) answers.Add(new Answer(key, smp.Prompt, smp.Answer));
        }
        return (models, answers);
    }

    /// <summary>Best-of-N's row, at the <paramref name="at"/>-th N of the bon stage: sentiment measures only (it samples from the SFT model).</summary>
    static JsonObject BestOfNRow(Dictionary<string, JsonElement> bon, int at)
    {
        double AtN(string k) => bon[k].EnumerateArray().ElementAt(at).GetDouble();
        var row = new JsonObject { ["n"] = bon["n"].EnumerateArray().ElementAt(at).GetInt32() };
        foreach (var k in AccuracyKeys.Concat(TaskEval.AlignmentKeys)) row[k] = null;   // it answers no task question
        row["oracle_sentiment"] = FiniteOrNull(AtN("oracle_sentiment"));
        row["oracle_sentiment_sd"] = FiniteOrNull(AtN("oracle_sentiment_sd"));
        row["rm_score"] = FiniteOrNull(AtN("rm_score"));
        row["kl_to_sft"] = FiniteOrNull(AtN("kl"));
        row["pretrain_val_loss"] = null;
        return row;
    }

    static IEnumerable<Answer> BestOfNAnswers(PipelineConfig c, Bench b, int n)
    {
        var prompts = b.Prompts.Take(SamplePrompts).ToList();
        var candidates = BestOfN.Sample(new TextGenerator(b.Sft, b.Tokenizer), b.Rm, b.Tokenizer, prompts, false, n,
            new SamplingOptions { Temperature = 1.0, MaxNewTokens = c.Ppo.MaxNewTokens, Seed = c.Seed });
        return prompts.Select((p, i) => new Answer("best_of_n", p, BestOfN.Best(candidates[i], n).Text));
    }

    /// <summary>The reward–KL frontier: PPO and DPO at each β they ran with, best-of-N at each N.</summary>
    static JsonArray Frontier(string root, PipelineConfig c, Dictionary<string, JsonElement> bon, List<int> ns)
    {
        var frontier = new JsonArray();
        void Point(string method, double param, string summaryPath)
        {
            if (!File.Exists(summaryPath)) return;
            var s = RunDirectory.ReadSummary(summaryPath);
            double Number(string k) => s.TryGetValue(k, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN;
            double kl = Number("kl_to_sft"), o = Number("oracle_sentiment");
            if (double.IsFinite(kl) && double.IsFinite(o))
                frontier.Add(new JsonObject { ["method"] = method, ["param"] = param, ["kl"] = kl, ["oracle_sentiment"] = o });
        }
        Point("ppo", c.Ppo.Beta, Path.Combine(root, "ppo", "summary.json"));
        foreach (var b in c.Frontier.PpoBetas) Point("ppo", b, Path.Combine(root, "frontier", $"ppo_beta{b}", "summary.json"));
        Point("dpo", c.Dpo.Beta, Path.Combine(root, "dpo", "summary.json"));
        foreach (var b in c.Frontier.DpoBetas) Point("dpo", b, Path.Combine(root, "frontier", $"dpo_beta{b}", "summary.json"));
        for (int i = 0; i < ns.Count; i++)
            frontier.Add(new JsonObject
            {
                ["method"] = "best_of_n", ["param"] = ns[i], ["kl"] = bon["kl"].EnumerateArray().ElementAt(i).GetDouble(),
                ["oracle_sentiment"] = bon["oracle_sentiment"].EnumerateArray().ElementAt(i).GetDouble(),
            });
        return frontier;
    }

    static JsonObject Ablations(string root)
    {
        var ablations = new JsonObject();
        foreach (var name in new[] { "ppo_no_ptx", "ppo_beta0" })
        {
            var p = Path.Combine(root, "frontier", name, "summary.json");
            if (File.Exists(p)) ablations[name] = JsonNode.Parse(File.ReadAllText(p));
        }
        return ablations;
    }

    static double StageSeconds(string root, string stage)
    {
        var f = Path.Combine(root, stage, "stage_time.json");
        return File.Exists(f) ? JsonDocument.Parse(File.ReadAllText(f)).RootElement.GetProperty("wall_seconds").GetDouble() : 0;
    }

    static JsonNode? Num(Dictionary<string, JsonElement> s, string k) =>
        s.TryGetValue(k, out var v) && v.ValueKind == JsonValueKind.Number ? FiniteOrNull(v.GetDouble()) : null;

    static JsonObject Row(IReadOnlyDictionary<string, double> tasks, IReadOnlyDictionary<string, double> pol, double pretrainLoss)
    {
        var row = new JsonObject();
        foreach (var k in AccuracyKeys) row[k] = FiniteOrNull(tasks[k]);
        row["oracle_sentiment"] = FiniteOrNull(pol["oracle_sentiment"]);
        row["oracle_sentiment_sd"] = FiniteOrNull(pol["oracle_sentiment_sd"]);
        row["rm_score"] = FiniteOrNull(pol["rm_score"]);
        row["kl_to_sft"] = FiniteOrNull(pol["kl_to_sft"]);
        row["pretrain_val_loss"] = FiniteOrNull(pretrainLoss);
        return row;
    }

    /// <summary>A question template as shown to people: "What is the capital of {state}?".</summary>
    public static string PhrasingKey(string template) => template.Replace("{0}", "{state}", StringComparison.Ordinal);

    /// <summary>
    /// Does DPO's frontier dominate PPO's? For each PPO point, the best DPO oracle score at no more KL
    /// is compared with it: "dpo dominates" when DPO matches or beats every PPO point, "ppo dominates"
    /// when the reverse holds, else "mixed".
    /// </summary>
    public static (string Verdict, string Detail) Dominance(JsonArray frontier)
    {
        var pts = frontier.Select(p => (M: (string)p!["method"]!, Kl: (double)p["kl"]!, O: (double)p["oracle_sentiment"]!)).ToList();
        var ppo = pts.Where(p => p.M == "ppo").ToList();
        var dpo = pts.Where(p => p.M == "dpo").ToList();
        if (ppo.Count == 0 || dpo.Count == 0) return ("incomparable", "one of the methods has no points");
        bool Covers(List<(string M, double Kl, double O)> a, (string M, double Kl, double O) p) => a.Any(x => x.Kl <= p.Kl + 1e-9 && x.O >= p.O - 1e-9);
        bool dpoDom = ppo.All(p => Covers(dpo, p));
        bool ppoDom = dpo.All(p => Covers(ppo, p));
        var verdict = dpoDom && !ppoDom ? "dpo dominates" : ppoDom && !dpoDom ? "ppo dominates" : dpoDom ? "equal" : "mixed";
        var detail = verdict switch
        {
            "dpo dominates" => "As in the DPO paper, every PPO point is matched or beaten by a DPO point at no more KL.",
            "ppo dominates" => "Unlike the DPO paper, every DPO point is matched or beaten by a PPO point at no more KL on this task.",
            "mixed" => "Neither frontier dominates: each method has points the other does not reach at the same or lower KL (the DPO paper found DPO's frontier dominating).",
            _ => "The two frontiers coincide.",
        };
        return (verdict, detail);
    }

    static void FrontierPlot(string path, JsonArray frontier)
    {
        var plot = new ScottPlot.Plot();
        foreach (var g in frontier.GroupBy(p => (string)p!["method"]!))
        {
            var pts = g.OrderBy(p => (double)p!["kl"]!).ToList();
            var sc = plot.Add.Scatter(pts.Select(p => (double)p!["kl"]!).ToArray(), pts.Select(p => (double)p!["oracle_sentiment"]!).ToArray());
            sc.LegendText = g.Key;
            sc.MarkerSize = 8;
        }
        plot.Title("Reward–KL frontier (oracle sentiment vs KL to the SFT model)");
        plot.XLabel("KL(π ‖ π_SFT), nats per response");
        plot.YLabel("oracle sentiment");
        plot.ShowLegend();
        plot.SavePng(path, 800, 500);
    }

    /// <summary>A report cell: the number formatted, or "n/a".</summary>
    static string Cell(JsonNode? n, string fmt = "F3") =>
        n is null ? "n/a" : double.Parse(n.ToJsonString(), CultureInfo.InvariantCulture).ToString(fmt, CultureInfo.InvariantCulture);

    /// <summary>A JSON number, or null where the value is missing or not finite.</summary>
    static JsonNode? FiniteOrNull(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    /// <summary>Full fine-tuning against LoRA (cost and accuracy), and held-out capital accuracy per phrasing.</summary>
    static void SftSection(StringBuilder sb, JsonObject r)
    {
        var rows = new[] { "sft", "sft_lora" }.Where(k => r["models"]![k] is JsonObject).ToList();
        sb.Append("## Instruction tuning: full fine-tuning and LoRA\n\n| run | trainable parameters | wall seconds | peak RSS (MiB) | capitals held-out | unseen phrasings | multi-turn | spam | word sentiment |\n|---|---|---|---|---|---|---|---|---|\n");
        foreach (var k in rows)
        {
            var m = r["models"]![k]!;
            sb.Append($"| {k} | {Cell(m["trainable_parameters"], "N0")} | {Cell(m["wall_seconds"], "F0")} | {Cell(m["peak_rss_mb"], "F0")} | {Cell(m["capitals_heldout_accuracy"])} | " +
                      $"{Cell(m["capitals_unseen_phrasing_accuracy"])} | {Cell(m["multiturn_accuracy"])} | {Cell(m["spam_accuracy"])} | {Cell(m["word_sentiment_accuracy"])} |\n");
        }
        sb.Append($"\nLater stages start from **{r["main_sft"]}**. Same data, steps and schedule; LoRA at lora_lr_multiplier × the learning rate.\n\n");
        var phrasings = rows.SelectMany(k => (r["models"]![k]!["capitals_heldout_by_phrasing"] as JsonObject)?.Select(kv => kv.Key) ?? Enumerable.Empty<string>()).Distinct().ToList();
        if (phrasings.Count == 0) return;
        sb.Append($"Held-out capitals by phrasing (ten held-out states each; the last five phrasings are in no training data):\n\n| phrasing | {string.Join(" | ", rows)} |\n|---|{string.Concat(rows.Select(_ => "---|"))}\n");
        foreach (var ph in phrasings)
            sb.Append($"| {ph} | {string.Join(" | ", rows.Select(k => Cell(r["models"]![k]!["capitals_heldout_by_phrasing"]?[ph])))} |\n");
        sb.Append('\n');
    }

    static string Markdown(string root, JsonObject r, List<Answer> answers, string dominance, Dictionary<string, JsonElement> bon)
    {
        var sb = new StringBuilder();
        sb.Append("# ChatForge pipeline report\n\n");
        sb.Append($"Wall time of the stages: {Cell(r["wall_seconds"], "F0")} s. Numbers below are also in `report.json`.\n\n");
        sb.Append("## Models\n\n");
        sb.Append("| model | capitals held-out | capitals seen | capitals, unseen phrasings | multi-turn | spam | word sentiment | oracle sentiment (± sd) | RM score | KL to SFT | pretraining loss |\n");
        sb.Append("|---|---|---|---|---|---|---|---|---|---|---|\n");
        foreach (var k in ModelKeys)
        {
            if (r["models"]![k] is not JsonObject m) continue;
            sb.Append($"| {k}{(k == (string?)r["main_sft"] ? " (main)" : "")} | {string.Join(" | ", AccuracyKeys.Select(a => Cell(m[a])))} | " +
                      $"{Cell(m["oracle_sentiment"])} ± {Cell(m["oracle_sentiment_sd"])} | {Cell(m["rm_score"])} | {Cell(m["kl_to_sft"])} | {Cell(m["pretrain_val_loss"])} |\n");
        }
        sb.Append("\nAccuracies: greedy answers to held-out questions (base: the raw question; others: the chat template). Capitals held-out: ten held-out states × the five evaluated phrasings; unseen phrasings: the same states in five phrasings no training data holds; multi-turn: a held-out state named in the first turn, \"its capital\" asked in a later one, the model answering every turn itself. Oracle sentiment: the lexicon oracle on one sampled continuation per held-out prompt; RM score: the reward model's normalised score of the same continuations; KL: Σ log π − log π_SFT over the continuation, averaged. Best-of-N uses the SFT policy, so task accuracies and pretraining loss do not apply (n/a); its KL is log N − (N−1)/N.\n\n");
        sb.Append("## Helpful, honest, harmless (held-out prompts)\n\n| model | helpful accuracy | honest: abstains (unknowable) | hallucinates (unknowable) | abstains (knowable) | refuses disallowed | refuses benign look-alikes |\n|---|---|---|---|---|---|---|\n");
        foreach (var k in ModelKeys)
        {
            if (r["models"]![k] is not JsonObject m) continue;
            sb.Append($"| {k}{(k == (string?)r["main_sft"] ? " (main)" : "")} | {string.Join(" | ", TaskEval.AlignmentKeys.Select(a => Cell(m[a])))} |\n");
        }
        sb.Append($"\nHelpful: the mean of the held-out capitals, multi-turn, spam and word-sentiment accuracies. Honest: questions about made-up states and words (unknowable), where the abstention \"{r["abstain_text"]}\" is right and any specific answer a hallucination, and about real held-out states and words (knowable). Harmless: disallowed requests in held-out categories and phrasings, where the refusal \"{r["refusal_text"]}\" is right, and benign requests that share their words (\"kill a stuck process\"), where refusing is over-refusal.\n\n");
        sb.Append($"Reward model held-out pairwise accuracy against the noiseless oracle: {Cell(r["reward_model"]!["heldout_accuracy"])} (against the noisy labeler: {Cell(r["reward_model"]!["heldout_labeler_accuracy"])}; the labeler agrees with the oracle on {Cell(r["reward_model"]!["labeler_agreement"])} of pairs).\n\n");
        SftSection(sb, r);
        sb.Append("## Reward–KL frontier\n\n![frontier](frontier.png)\n\n| method | parameter | KL | oracle sentiment |\n|---|---|---|---|\n");
        foreach (var p in r["frontier"]!.AsArray())
            sb.Append($"| {p!["method"]} | {Cell(p["param"], "G4")} | {Cell(p["kl"])} | {Cell(p["oracle_sentiment"])} |\n");
        sb.Append($"\nDPO vs PPO: **{r["dpo_vs_ppo"]}**. {dominance}\n\n");
        sb.Append($"Best-of-N: {bon["note"].GetString()}.\n\n");
        if (r["ablations"] is JsonObject ab && ab.Count > 0)
        {
            sb.Append("## PPO ablations\n\n| run | oracle sentiment | RM score | KL to SFT | pretraining loss | SFT pretraining loss |\n|---|---|---|---|---|---|\n");
            var main = JsonNode.Parse(File.ReadAllText(Path.Combine(root, "ppo", "summary.json")))!;
            foreach (var (name, s) in new[] { ("ppo (main)", main) }.Concat(ab.Select(kv => (kv.Key, kv.Value!))))
                sb.Append($"| {name} | {Cell(s["oracle_sentiment"])} | {Cell(s["rm_score"])} | {Cell(s["kl_to_sft"])} | {Cell(s["pretrain_val_loss"])} | {Cell(s["sft_pretrain_val_loss"])} |\n");
            sb.Append("\n`ppo_no_ptx` is PPO without the pretraining term (γ = 0); `ppo_beta0` has no KL penalty (β = 0), where the reward model's score can climb while the oracle's does not: reward hacking.\n\n");
        }
        sb.Append("## The same prompts, every model\n\n");
        foreach (var g in answers.GroupBy(a => a.Prompt))
        {
            sb.Append($"**{g.Key}**\n\n");
            foreach (var a in g) sb.Append($"- *{a.Model}*: {a.Text.Replace("\n", " ", StringComparison.Ordinal).Trim()}\n");
            sb.Append('\n');
        }
        sb.Append("## Curves\n\n");
        foreach (var (title, rel) in new[]
        {
            ("Pretraining loss", "pretrain/loss.png"), ("SFT loss", "sft/loss.png"), ("Reward model accuracy", "reward/reward_accuracy.png"),
            ("PPO reward (RM and oracle)", "ppo/ppo_reward.png"), ("PPO KL", "ppo/ppo_kl.png"), ("DPO implicit rewards", "dpo/dpo_rewards.png"),
            ("Best-of-N", "bon/best_of_n.png"), ("PPO without KL penalty (β = 0)", "frontier/ppo_beta0/ppo_reward.png"),
        })
            if (File.Exists(Path.Combine(root, rel))) sb.Append($"### {title}\n\n![{title}](../{rel})\n\n");
        return sb.ToString();
    }
}
