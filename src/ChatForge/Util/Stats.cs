namespace ChatForge.Util;

/// <summary>Small statistics over lists of numbers.</summary>
public static class Stats
{
    /// <summary>Sample standard deviation (n − 1 in the denominator); 0 for fewer than two values.</summary>
    public static double SampleStd(IReadOnlyCollection<double> xs)
    {
        if (xs.Count < 2) return 0;
        double mean = xs.Average();
        return Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1));
    }
}
