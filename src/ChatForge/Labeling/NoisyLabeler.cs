namespace ChatForge.Labeling;

/// <summary>The labeler: ranks responses by a score plus Gaussian noise; near-equal perceived scores are ties.</summary>
public sealed class NoisyLabeler
{
    readonly double _noise, _tie;
    readonly Random _rng;
    public NoisyLabeler(double noiseStd, double tieMargin, long seed) { _noise = noiseStd; _tie = tieMargin; _rng = new Random((int)(seed & 0x7fffffff)); }

    public int[] Rank(IReadOnlyList<double> scores)
    {
        var perceived = scores.Select(s => s + _noise * Gaussian()).ToArray();
        var order = Enumerable.Range(0, scores.Count).OrderByDescending(i => perceived[i]).ToArray();
        var ranks = new int[scores.Count];
        int rank = 1; double groupTop = perceived[order[0]];
        for (int k = 0; k < order.Length; k++)
        {
            if (k > 0 && groupTop - perceived[order[k]] >= _tie) { rank = k + 1; groupTop = perceived[order[k]]; }
            ranks[order[k]] = rank;
        }
        return ranks;
    }

    double Gaussian()
    {
        double u1 = 1.0 - _rng.NextDouble(), u2 = _rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
