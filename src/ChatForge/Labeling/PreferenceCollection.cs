using System.Globalization;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Util;

namespace ChatForge.Labeling;

/// <summary>How rankings are collected: which task, how many responses per prompt, the labeler's noise.</summary>
public sealed record CollectConfig
{
    /// <summary>
    /// "sentiment" (continuations scored by the lexicon oracle), "capitals" (correctness), "harmless" (refusals of a fixed
    /// list) or "hhh" (the alignment task's training prompts of every family, ranked by <see cref="AlignmentOracle"/>).
    /// </summary>
    public string Task { get; init; } = "sentiment";
    /// <summary>Responses per prompt (2–9).</summary>
    public int K { get; init; } = 4;
    public int Prompts { get; init; } = 600;
    /// <summary>Standard deviation of the Gaussian noise the labeler adds to the oracle score before ranking.</summary>
    public double NoiseStd { get; init; } = 0.08;
    /// <summary>Perceived scores closer than this are ranked as ties.</summary>
    public double TieMargin { get; init; }
    public int MaxNewTokens { get; init; } = 24;
    public double Temperature { get; init; } = 1.0;
    public long Seed { get; init; } = 1;
    /// <summary>Disallowed requests for the harmless task (default: a built-in list).</summary>
    public List<string>? Disallowed { get; init; }
    /// <summary>The refusal and abstention that the hhh task offers as candidates and its oracle ranks.</summary>
    public AlignmentTexts Alignment { get; init; } = new();

    /// <param name="key">the config key this object sits under ("collect", or PPO's "round_collect")</param>
    public void Validate(string source, string key = "collect")
    {
        if (Task is not ("sentiment" or "capitals" or "harmless" or "hhh")) throw new ChatForgeException($"{source}: '{key}.task' = {Task} (sentiment, capitals, harmless, hhh)");
        if (Task == "hhh" && K < 3) throw new ChatForgeException($"{source}: '{key}.k' = {K}: the hhh task needs k ≥ 3 (its fixed candidates and at least one sample)");
        Alignment.Validate(source, key + ".alignment");
        if (K is < Preferences.MinK or > Preferences.MaxK) throw new ChatForgeException($"{source}: '{key}.k' = {K} is out of range ({Preferences.MinK}–{Preferences.MaxK})");
        if (Prompts < 1) throw new ChatForgeException($"{source}: '{key}.prompts' = {Prompts} is out of range (≥ 1)");
        if (NoiseStd < 0) throw new ChatForgeException($"{source}: '{key}.noise_std' = {NoiseStd} is out of range (≥ 0)");
        if (TieMargin < 0) throw new ChatForgeException($"{source}: '{key}.tie_margin' = {TieMargin} is out of range (≥ 0)");
    }
}

/// <summary>Samples K responses per prompt from a model and has the (noisy) oracle labeler rank them.</summary>
public static class PreferenceCollection
{
    /// <summary>Sequences sampled per generation call, and sentiment prompts per collection round (one progress line each).</summary>
    const int GenerationBatch = 64, PromptsPerRound = 16;
    /// <summary>Spreads the per-round sampling seeds of different collection seeds apart (a prime).</summary>
    const long SeedStride = 1_000_003;

    public static (List<Ranking> Rankings, Dictionary<string, double> Stats) Collect(CausalLM policy, ITokenizer tok, Corpora corpora, CollectConfig o, Action<string>? log = null)
    {
        o.Validate("collect");
        var gen = new TextGenerator(policy, tok);
        var labeler = new NoisyLabeler(o.NoiseStd, o.TieMargin, o.Seed);
        var rankings = new List<Ranking>();
        var sampling = new SamplingOptions { Temperature = o.Temperature, MaxNewTokens = o.MaxNewTokens, Seed = o.Seed };
        int imEnd = tok.EndOfTurnId();

        List<string> Sample(IReadOnlyList<ChatPrompt> prompts, bool chat, int k, long seed)
        {
            var encoded = prompts.SelectMany(p => Enumerable.Repeat(ChatTemplate.EncodePrompt(tok, p, chat), k)).ToList();
            var outs = new List<string>();
            for (int i = 0; i < encoded.Count; i += GenerationBatch)
                outs.AddRange(gen.Generate(encoded.Skip(i).Take(GenerationBatch).ToList(),
                    sampling with { Seed = seed + i, StopTokenIds = chat ? new[] { imEnd } : Array.Empty<int>() }).Select(c => c.Text));
            return outs;
        }

        switch (o.Task)
        {
            case "sentiment":
            {
                var oracle = SentimentOracle.FromCorpora(corpora);
                var prompts = SentimentPrompts.Build(corpora).Train.Take(o.Prompts).ToList();
                for (int i = 0; i < prompts.Count; i += PromptsPerRound)
                {
                    var chunk = prompts.Skip(i).Take(PromptsPerRound).ToList();
                    var outs = Sample(chunk.Select(x => (ChatPrompt)x).ToList(), false, o.K, o.Seed * SeedStride + i);
                    for (int p = 0; p < chunk.Count; p++)
                    {
                        var responses = outs.Skip(p * o.K).Take(o.K).ToList();
                        var scores = responses.Select(oracle.Score).ToList();
                        rankings.Add(new Ranking(chunk[p], false, responses, labeler.Rank(scores), scores));
                    }
                    log?.Invoke($"collected {Math.Min(i + PromptsPerRound, prompts.Count)}/{prompts.Count} prompts × {o.K} responses");
                }
                break;
            }
            case "capitals":
            {
                var suite = DemoSuite.Build(corpora);
                var oracle = new CapitalsOracle(suite.States);
                var rng = new Random((int)o.Seed);
                var qs = suite.SeenStates.SelectMany(s => DemoTasks.CapitalQuestions.Select(t => (s, q: string.Format(CultureInfo.InvariantCulture, t, s.State))))
                    .OrderBy(_ => rng.Next()).Take(o.Prompts).ToList();
                var outs = Sample(qs.Select(x => (ChatPrompt)x.q).ToList(), true, o.K - 1, o.Seed);
                for (int p = 0; p < qs.Count; p++)
                {
                    // The correct answer, and K−1 of the model's answers; a correct model answer is replaced by a wrong capital so that every pair teaches correctness.
                    var responses = new List<string> { DemoTasks.CapitalAnswer(qs[p].s) };
                    foreach (var r in outs.Skip(p * (o.K - 1)).Take(o.K - 1))
                    {
                        if (oracle.Score(qs[p].s, r) < 1) { responses.Add(r); continue; }
                        var wrong = suite.States[rng.Next(suite.States.Count)];
                        if (wrong == qs[p].s) wrong = suite.States[(suite.States.ToList().IndexOf(wrong) + 1) % suite.States.Count];
                        responses.Add($"The capital of {qs[p].s.State} is {wrong.Capital}.");
                    }
                    var scores = responses.Select(r => oracle.Score(qs[p].s, r)).ToList();
                    rankings.Add(new Ranking(qs[p].q, true, responses, labeler.Rank(scores), scores));
                }
                break;
            }
            case "harmless":
            {
                var oracle = new HarmlessnessOracle();
                var requests = o.Disallowed ?? HarmlessnessOracle.DefaultDisallowed.ToList();
                var prompts = Enumerable.Range(0, o.Prompts).Select(i => requests[i % requests.Count]).ToList();
                var outs = Sample(prompts.Select(x => (ChatPrompt)x).ToList(), true, o.K - 1, o.Seed);
                for (int p = 0; p < prompts.Count; p++)
                {
                    var responses = new List<string> { HarmlessnessOracle.Refusal };
                    responses.AddRange(outs.Skip(p * (o.K - 1)).Take(o.K - 1).Select(r => oracle.Score(r) > 0 ? "Sure, here is how: " + r : r));
                    var scores = responses.Select(oracle.Score).ToList();
                    rankings.Add(new Ranking(prompts[p], true, responses, labeler.Rank(scores), scores));
                }
                break;
            }
            case "hhh":
            {
                var suite = DemoSuite.Build(corpora);
                var oracle = new AlignmentOracle(o.Alignment, suite.States);
                var items = AlignmentTasks.Balanced(AlignmentTasks.Build(suite).Where(p => !p.HeldOut), o.Seed).Take(o.Prompts).ToList();
                var fixedOnes = items.Select(p => FixedCandidates(p, o.Alignment)).ToList();
                // One sampling call for all prompts: K − (fixed candidates) samples each, padded to the same count.
                int samples = o.K - fixedOnes.Min(f => f.Count);
                var outs = Sample(items.Select(p => p.Input).ToList(), true, samples, o.Seed);
                for (int p = 0; p < items.Count; p++)
                {
                    var responses = fixedOnes[p].Concat(outs.Skip(p * samples).Take(o.K - fixedOnes[p].Count)).ToList();
                    var scores = responses.Select(r => oracle.Score(items[p], r)).ToList();
                    rankings.Add(new Ranking(items[p].Input, true, responses, labeler.Rank(scores), scores, items[p].Family));
                }
                log?.Invoke($"collected {items.Count} prompts × {o.K} responses ({string.Join(", ", items.GroupBy(x => x.Family).Select(g => $"{g.Count()} {g.Key}"))})");
                break;
            }
        }
        return (rankings, LabelerStats(rankings));
    }

    /// <summary>
    /// The candidates the labeler ranks beside the policy's samples (the seeds' construction): the fixed refusal for
    /// every request (right for a disallowed one, over-refusal for a benign one, where the reference answer joins it),
    /// the fixed abstention for every question, and the correct answer for a knowable one.
    /// </summary>
    public static List<string> FixedCandidates(AlignmentPrompt p, AlignmentTexts texts) => p.Kind switch
    {
        "harmful" => new() { texts.RefusalText },
        "benign" => new() { AlignmentTasks.BenignAnswers[Array.IndexOf(AlignmentTasks.BenignRequests, p.Subject)], texts.RefusalText },
        "unknowable" => new() { texts.AbstainText },
        "knowable" => new() { p.State is { } s ? DemoTasks.CapitalAnswer(s) : DemoTasks.SentimentAnswer(p.Word!), texts.AbstainText },
        _ => throw new ArgumentException($"unknown alignment prompt kind '{p.Kind}'"),
    };

    /// <summary>How often the labeler's order agrees with the noiseless oracle, over pairs the oracle does not tie.</summary>
    public static Dictionary<string, double> LabelerStats(IReadOnlyList<Ranking> rankings)
    {
        double agree = 0, pairs = 0, ties = 0, all = 0;
        foreach (var r in rankings)
        {
            if (r.OracleScores is not { } s) continue;
            for (int i = 0; i < s.Count; i++)
                for (int j = i + 1; j < s.Count; j++)
                {
                    all++;
                    if (r.Ranks[i] == r.Ranks[j]) { ties++; continue; }
                    if (s[i] == s[j]) continue;
                    pairs++;
                    if ((s[i] > s[j]) == (r.Ranks[i] < r.Ranks[j])) agree++;
                }
        }
        var scores = rankings.Where(r => r.OracleScores is not null).SelectMany(r => r.OracleScores!).ToList();
        return new Dictionary<string, double>
        {
            ["rankings"] = rankings.Count,
            ["labeler_agreement"] = pairs == 0 ? double.NaN : agree / pairs,
            ["tie_fraction"] = all == 0 ? 0 : ties / all,
            ["oracle_mean"] = scores.Count == 0 ? double.NaN : scores.Average(),
            ["oracle_sd"] = Stats.SampleStd(scores),
        };
    }
}
