using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Training;

public class LossTests
{
    // Worked by hand: position 0 has logits [1, 2, 3] and target 2:
    //   CE = log(e^1 + e^2 + e^3) − 3 = log(30.19287) − 3 = 0.407606
    // position 1 has logits [0, 0, 0] and target 0: CE = log 3 = 1.098612.
    static Tensor Logits() => tensor(new float[] { 1, 2, 3, 0, 0, 0 }, new long[] { 1, 2, 3 });

    [Fact]
    public void Cross_entropy_is_the_mean_over_positions()
    {
        var loss = Losses.CrossEntropy(Logits(), tensor(new long[] { 2, 0 }, new long[] { 1, 2 }));
        Assert.Equal((0.407606 + 1.098612) / 2, loss.item<float>(), 5);
    }

    [Fact]
    public void Ignored_positions_take_no_part()
    {
        var targets = tensor(new long[] { 2, CausalBatch.IgnoreIndex }, new long[] { 1, 2 });
        Assert.Equal(0.407606, Losses.CrossEntropy(Logits(), targets).item<float>(), 5);
        var (sum, count) = LogProbs.CrossEntropySum(Logits(), targets);
        Assert.Equal(0.407606, sum.item<float>(), 5);
        Assert.Equal(1, count.item<long>());
        var lp = LogProbs.TokenLogProbs(Logits(), targets);
        Assert.Equal(-0.407606, lp[0, 0].item<float>(), 5);
        Assert.Equal(0, lp[0, 1].item<float>());
    }

    [Theory]
    [InlineData(0, 1.0 / 11)]     // warmup: (step+1)/(warmup+1) of the peak
    [InlineData(9, 10.0 / 11)]
    [InlineData(10, 1.0)]         // cosine starts at the peak
    [InlineData(60, 0.55)]        // halfway: min + (max−min)/2
    [InlineData(110, 0.1)]        // end of decay
    [InlineData(500, 0.1)]        // after it: min_lr
    public void Learning_rate_warms_up_then_follows_a_cosine(long step, double expected) =>
        Assert.Equal(expected, LrSchedule.At(step, 1.0, 0.1, 10, 110), 6);
}
