namespace ChatForge.Util;

/// <summary>Small descriptive statistics, written once.</summary>
public static class Stats
{
    /// <summary>Sample standard deviation (n − 1 in the denominator); NaN for fewer than two values.</summary>
    public static double SampleStd(IReadOnlyCollection<double> xs)
    {
        if (xs.Count < 2) return double.NaN;
        double mean = xs.Average();
        double ss = 0;
        foreach (var x in xs) ss += (x - mean) * (x - mean);
        return Math.Sqrt(ss / (xs.Count - 1));
    }
}
