using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Reward;

public class RewardLossTests
{
    // −log σ(x) = log(1 + e^−x): x=1 → 0.313262, x=2 → 0.126928, x=0.5 → 0.474077, x=1.5 → 0.201413, x=−1 → 1.313262.

    [Fact]
    public void Ranking_loss_averages_over_all_pairs_of_a_k_wise_ranking()
    {
        // K = 3, scores 2 > 1 > 0 in rank order: pairs (1,2), (1,3), (2,3) with differences 1, 2, 1.
        var loss = Losses.RankingLoss(tensor(new float[] { 2, 1, 0 }).view(1, 3), tensor(new long[] { 1, 2, 3 }).view(1, 3));
        Assert.Equal((0.313262 + 0.126928 + 0.313262) / 3, loss.item<float>(), 5);
    }

    [Fact]
    public void A_margin_is_subtracted_from_every_difference()
    {
        var loss = Losses.RankingLoss(tensor(new float[] { 2, 1, 0 }).view(1, 3), tensor(new long[] { 1, 2, 3 }).view(1, 3), margin: 0.5);
        Assert.Equal((0.474077 + 0.201413 + 0.474077) / 3, loss.item<float>(), 5);
    }

    [Fact]
    public void Ties_are_skipped_and_each_prompt_is_normalised_by_its_own_pair_count()
    {
        // Prompt 1: ranks 1, 1, 2 → pairs (1,3) d=2 and (2,3) d=1. Prompt 2: two responses in the wrong order (d = −1), third slot empty.
        var scores = tensor(new float[] { 2, 1, 0, 0, 1, 9 }).view(2, 3);
        var ranks = tensor(new long[] { 1, 1, 2, 1, 2, 0 }).view(2, 3);
        var expected = ((0.126928 + 0.313262) / 2 + 1.313262) / 2;
        Assert.Equal(expected, Losses.RankingLoss(scores, ranks).item<float>(), 5);
        var (right, pairs) = Losses.PairwiseAccuracy(scores, ranks);
        Assert.Equal(2, right);
        Assert.Equal(3, pairs);
    }

    [Fact]
    public void A_ranking_of_all_ties_has_no_pairs_and_does_not_count_in_the_mean_over_prompts()
    {
        // Prompt 1: ranks 1, 2, 3 with scores 2, 1, 0 → (0.313262 + 0.126928 + 0.313262) / 3 = 0.251151.
        // Prompt 2: all three responses tied → no pairs, so the batch loss is prompt 1's alone (not half of it).
        var scores = tensor(new float[] { 2, 1, 0, 5, -3, 1 }).view(2, 3);
        var ranks = tensor(new long[] { 1, 2, 3, 1, 1, 1 }).view(2, 3);
        Assert.Equal((0.313262 + 0.126928 + 0.313262) / 3, Losses.RankingLoss(scores, ranks).item<float>(), 5);
    }

    [Fact]
    public void Gradient_pushes_the_preferred_score_up_and_the_other_down()
    {
        var s = tensor(new float[] { 0, 0 }, requires_grad: true);
        Losses.RankingLoss(s.view(1, 2), tensor(new long[] { 1, 2 }).view(1, 2)).backward();
        var g = s.grad!.data<float>().ToArray();
        Assert.Equal(-0.5, g[0], 5); // dL/dr_w = −(1 − σ(0)) = −0.5
        Assert.Equal(0.5, g[1], 5);
    }
}
