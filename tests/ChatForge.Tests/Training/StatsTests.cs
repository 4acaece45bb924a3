using ChatForge.Util;
using Xunit;

namespace ChatForge.Tests.Training;

public class StatsTests
{
    [Fact]
    public void Sample_std_divides_by_n_minus_one()
    {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32; 32 / 7 → sd 2.13809.
        Assert.Equal(Math.Sqrt(32.0 / 7), Stats.SampleStd(new double[] { 2, 4, 4, 4, 5, 5, 7, 9 }), 12);
        Assert.Equal(0, Stats.SampleStd(new double[] { 3, 3 }));
    }

    [Fact]
    public void Sample_std_of_fewer_than_two_values_is_undefined()
    {
        Assert.True(double.IsNaN(Stats.SampleStd(new double[] { 1 })));
        Assert.True(double.IsNaN(Stats.SampleStd(Array.Empty<double>())));
    }
}
