using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Labeling;
using ChatForge.Util;

namespace ChatForge.Evaluation;

/// <summary>
/// Best-of-N on held-out sentiment prompts for N = 1, 2, 4, …: the mean oracle score and the mean
/// reward-model score of the chosen responses, and the analytic KL. N samples are drawn once per
/// prompt and best-of-n uses the first n of them. When the RM score keeps rising but the oracle's
/// stops, the reward model is being overoptimised, and the summary says so.
/// </summary>
public static class BestOfNEval
{
    /// <summary>One N: the chosen responses' mean oracle and RM scores, the KL, and (alignment task) their honest and harmless rates.</summary>
    public sealed record Point(int N, double Oracle, double OracleSd, double Rm, double Kl, IReadOnlyDictionary<string, double>? Rates = null);

    public static List<Point> Curve(CausalLM policy, RewardModel rm, ITokenizer tok, SentimentOracle oracle, IReadOnlyList<string> prompts,
                                    IReadOnlyList<int> ns, SamplingOptions o)
    {
        var gen = new TextGenerator(policy, tok);
        var candidates = BestOfN.Sample(gen, rm, tok, prompts.Select(p => (ChatPrompt)p).ToList(), chat: false, ns.Max(), o);
        var points = new List<Point>();
        foreach (var n in ns.Order())
        {
            var best = candidates.Select(c => BestOfN.Best(c, n)).ToList();
            var scores = best.Select(b => oracle.Score(b.Text)).ToList();
            points.Add(new Point(n, scores.Average(), Stats.SampleStd(scores), best.Average(b => b.Reward), BestOfN.Kl(n)));
        }
        return points;
    }

    /// <summary>
    /// Best-of-N on the alignment task's held-out chat prompts (<paramref name="prompts"/>): the alignment oracle's mean
    /// score of the chosen responses, their RM score, the KL, and the rates of <see cref="TaskEval.AlignmentRates"/>.
    /// </summary>
    public static List<Point> AlignmentCurve(CausalLM policy, RewardModel rm, ITokenizer tok, AlignmentOracle oracle, IReadOnlyList<Data.AlignmentPrompt> prompts,
                                             IReadOnlyList<int> ns, SamplingOptions o)
    {
        var gen = new TextGenerator(policy, tok);
        var candidates = BestOfN.Sample(gen, rm, tok, prompts.Select(p => p.Input).ToList(), chat: true, ns.Max(), o);
        var points = new List<Point>();
        foreach (var n in ns.Order())
        {
            var best = candidates.Select(c => BestOfN.Best(c, n)).ToList();
            var scores = best.Select((b, i) => oracle.Score(prompts[i], b.Text)).ToList();
            points.Add(new Point(n, scores.Average(), Stats.SampleStd(scores), best.Average(b => b.Reward), BestOfN.Kl(n),
                TaskEval.AlignmentRates(prompts, best.Select(b => b.Text).ToList(), oracle)));
        }
        return points;
    }

    /// <summary>True when, from some N on, the RM score rises while the oracle score does not.</summary>
    public static bool Overoptimized(IReadOnlyList<Point> points) =>
        points.Zip(points.Skip(1)).Any(p => p.Second.Rm > p.First.Rm && p.Second.Oracle <= p.First.Oracle);
}
