using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Ppo;

public class PpoLossTests
{
    static Tensor T(params float[] v) => tensor(v).unsqueeze(0);
    static float[] A(Tensor t) => t.data<float>().ToArray();

    [Fact]
    public void Kl_penalized_rewards_add_the_score_at_the_last_response_token()
    {
        // β = 0.1: −0.1·(−1 − −1.5) = −0.05; −0.1·(−2 − −1) = 0.1, plus the score 2 at the last real token; padding 0.
        var r = Losses.KlPenalizedRewards(T(-1, -2, 0), T(-1.5f, -1, 0), tensor(new float[] { 2 }), T(1, 1, 0), 0.1);
        Assert.Equal(new[] { -0.05f, 2.1f, 0f }, A(r).Select(x => MathF.Round(x, 5)));
    }

    [Fact]
    public void Gae_matches_the_hand_computed_recursion()
    {
        // γ = 1, λ = 0.5: δ1 = 1 − 0.2 = 0.8 = A1; δ0 = 0 + 0.2 − 0.5 = −0.3, A0 = −0.3 + 0.5·0.8 = 0.1; R = A + V.
        var (adv, ret) = Losses.Gae(T(0, 1), T(0.5f, 0.2f), T(1, 1), 1.0, 0.5);
        Assert.Equal(new[] { 0.1f, 0.8f }, A(adv).Select(x => MathF.Round(x, 5)));
        Assert.Equal(new[] { 0.6f, 1.0f }, A(ret).Select(x => MathF.Round(x, 5)));
        // A masked second position contributes nothing: A0 = 1 + γ·0 − 0.5 = 0.5.
        var (adv2, ret2) = Losses.Gae(T(1, 5), T(0.5f, 9), T(1, 0), 0.9, 0.95);
        Assert.Equal(new[] { 0.5f, 0f }, A(adv2).Select(x => MathF.Round(x, 5)));
        Assert.Equal(new[] { 1.0f, 0f }, A(ret2).Select(x => MathF.Round(x, 5)));
    }

    [Fact]
    public void Clipped_surrogate_takes_the_pessimistic_term()
    {
        // Ratios 1.5 and 0.5, ε = 0.2. A = +1: max(−1.5, −1.2) = −1.2 (clipped), max(−0.5, −0.8) = −0.5 → mean −0.85.
        var logp = T(MathF.Log(1.5f), MathF.Log(0.5f));
        var (loss, frac) = Losses.PpoPolicyLoss(logp, T(0, 0), T(1, 1), T(1, 1), 0.2);
        Assert.Equal(-0.85, loss.item<float>(), 5);
        Assert.Equal(0.5, frac.item<float>(), 5);
        // A = −1: max(1.5, 1.2) = 1.5, max(0.5, 0.8) = 0.8 (clipped) → mean 1.15.
        var (loss2, frac2) = Losses.PpoPolicyLoss(logp, T(0, 0), T(-1, -1), T(1, 1), 0.2);
        Assert.Equal(1.15, loss2.item<float>(), 5);
        Assert.Equal(0.5, frac2.item<float>(), 5);
    }

    [Fact]
    public void Clipped_value_loss_takes_the_larger_error()
    {
        // V = 1, V_old = 0, R = 2, ε = 0.2: (1−2)² = 1, (0.2−2)² = 3.24 → ½·3.24.
        Assert.Equal(1.62, Losses.PpoValueLoss(T(1), T(0), T(2), T(1), 0.2).item<float>(), 5);
    }

    [Fact]
    public void Whitening_gives_zero_mean_unit_variance_over_the_mask()
    {
        var w = Losses.Whiten(T(1, 2, 3, 100), T(1, 1, 1, 0));
        var v = A(w);
        Assert.Equal(0, v.Take(3).Average(), 5);
        Assert.Equal(1, v.Take(3).Select(x => x * x).Average(), 4);
        Assert.Equal(0, v[3]);
    }

    [Fact]
    public void Entropy_of_a_uniform_distribution_is_log_v()
    {
        Assert.Equal(Math.Log(4), Losses.Entropy(zeros(1, 1, 4)).item<float>(), 5);
    }

    [Fact]
    public void Adaptive_kl_controller_moves_beta_by_the_clipped_proportional_error_times_n_over_horizon()
    {
        var a = new AdaptiveKlConfig { Target = 4, Horizon = 2000 };
        // KL 5 over target 4: error +0.25, clipped to +0.2; × 32/2000 → β·(1 + 0.0032).
        Assert.Equal(0.1 * 1.0032, PpoTrainer.AdaptBeta(0.1, 5, a, 32), 12);
        // KL 3.8: error −0.05 (within the clip) → β·(1 − 0.05·0.016) = β·0.9992.
        Assert.Equal(0.1 * 0.9992, PpoTrainer.AdaptBeta(0.1, 3.8, a, 32), 12);
        // KL 0: error −1, clipped to −0.2; n = 100, horizon 2000 → β·0.99.
        Assert.Equal(0.5 * 0.99, PpoTrainer.AdaptBeta(0.5, 0, a, 100), 12);
        // On target, or without a controller, β stays.
        Assert.Equal(0.1, PpoTrainer.AdaptBeta(0.1, 4, a, 32), 12);
        Assert.Equal(0.1, PpoTrainer.AdaptBeta(0.1, 50, null, 32));
    }
}
