using ChatForge.Evaluation;
using ChatForge.Training;

namespace ChatForge.Pipeline;

/// <summary>Writes a best-of-N curve into a run directory: summary.json and best_of_n.png.</summary>
public static class BestOfNStage
{
    /// <param name="oracleKey">the oracle's name in summary.json: oracle_sentiment, or oracle_alignment (the alignment task, with its rates per N)</param>
    public static Dictionary<string, object?> Write(RunDirectory run, IReadOnlyList<BestOfNEval.Point> points, string oracleKey = "oracle_sentiment")
    {
        Plots.Lines(run.PathOf("best_of_n.png"), "Best-of-N: reward model vs oracle", "N", "mean score of the chosen response", new[]
        {
            (oracleKey.Replace('_', ' '), points.Select(p => ((double)p.N, p.Oracle)).ToList()),
            ("reward model (normalised)", points.Select(p => ((double)p.N, p.Rm)).ToList()),
        });
        bool over = BestOfNEval.Overoptimized(points);
        var summary = new Dictionary<string, object?>
        {
            ["n"] = points.Select(p => p.N).ToList(),
            ["task"] = oracleKey == "oracle_alignment" ? "hhh" : "sentiment",
            [oracleKey] = points.Select(p => p.Oracle).ToList(),
            [oracleKey + "_sd"] = points.Select(p => p.OracleSd).ToList(),
            ["rm_score"] = points.Select(p => p.Rm).ToList(),
            ["kl"] = points.Select(p => p.Kl).ToList(),
            ["oracle_gain"] = points[^1].Oracle - points[0].Oracle,
            ["overoptimization"] = over,
            ["note"] = over
                ? "the reward model's score keeps rising with N while the oracle's stops: the reward model is being overoptimised"
                : "the oracle score rises with N wherever the reward model's does",
        };
        if (points[0].Rates is { } rates)
            foreach (var k in rates.Keys) summary[k] = points.Select(p => p.Rates![k]).ToList();
        run.WriteSummary(summary);
        return summary;
    }
}
