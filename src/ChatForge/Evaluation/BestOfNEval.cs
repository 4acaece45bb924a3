using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Evaluation;

/// <summary>
/// Best-of-N on held-out sentiment prompts for N = 1, 2, 4, …: the mean oracle score and the mean
/// reward-model score of the chosen responses, and the analytic KL. N samples are drawn once per
/// prompt and best-of-n uses the first n of them. When the RM score keeps rising but the oracle's
/// stops, the reward model is being overoptimised, and the summary says so.
/// </summary>
public static class BestOfNEval
{
    public sealed record Point(int N, double Oracle, double OracleSd, double Rm, double Kl);

    public static List<Point> Curve(Gpt policy, RewardModel rm, ITokenizer tok, SentimentOracle oracle, IReadOnlyList<string> prompts,
                                    IReadOnlyList<int> ns, SamplingOptions o)
    {
        var gen = new TextGenerator(policy, tok);
        var candidates = BestOfN.Sample(gen, rm, tok, prompts, chat: false, ns.Max(), o);
        var points = new List<Point>();
        foreach (var n in ns.Order())
        {
            var best = candidates.Select(c => BestOfN.Best(c, n)).ToList();
            var scores = best.Select(b => oracle.Score(b.Text)).ToList();
            double mean = scores.Average();
            double sd = Math.Sqrt(scores.Select(s => (s - mean) * (s - mean)).Sum() / Math.Max(1, scores.Count - 1));
            points.Add(new Point(n, mean, sd, best.Average(b => b.Reward), BestOfN.Kl(n)));
        }
        return points;
    }

    /// <summary>True when, from some N on, the RM score rises while the oracle score does not.</summary>
    public static bool Overoptimized(IReadOnlyList<Point> points) =>
        points.Zip(points.Skip(1)).Any(p => p.Second.Rm > p.First.Rm && p.Second.Oracle <= p.First.Oracle);

    public static Dictionary<string, object?> Write(RunDirectory run, IReadOnlyList<Point> points)
    {
        Plots.Lines(run.Path_("best_of_n.png"), "Best-of-N: reward model vs oracle", "N", "mean score of the chosen response", new[]
        {
            ("oracle sentiment", points.Select(p => ((double)p.N, p.Oracle)).ToList()),
            ("reward model (normalised)", points.Select(p => ((double)p.N, p.Rm)).ToList()),
        });
        bool over = Overoptimized(points);
        var summary = new Dictionary<string, object?>
        {
            ["n"] = points.Select(p => p.N).ToList(),
            ["oracle_sentiment"] = points.Select(p => p.Oracle).ToList(),
            ["oracle_sentiment_sd"] = points.Select(p => p.OracleSd).ToList(),
            ["rm_score"] = points.Select(p => p.Rm).ToList(),
            ["kl"] = points.Select(p => p.Kl).ToList(),
            ["oracle_gain"] = points[^1].Oracle - points[0].Oracle,
            ["overoptimization"] = over,
            ["note"] = over
                ? "the reward model's score keeps rising with N while the oracle's stops: the reward model is being overoptimised"
                : "the oracle score rises with N wherever the reward model's does",
        };
        run.WriteSummary(summary);
        return summary;
    }
}
