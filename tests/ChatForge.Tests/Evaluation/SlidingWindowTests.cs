using ChatForge.Evaluation;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Evaluation;

/// <summary>Scoring text longer than the context: every token once, with the context the rule gives it.</summary>
public class SlidingWindowTests
{
    const int Ctx = 16;

    static Gpt Model()
    {
        manual_seed(11);
        return new Gpt(TinyBase.Config with { NPositions = Ctx, InitializerRange = 0.3 });
    }

    /// <summary>log p(ids[t] | ids[begin..t)) by one forward pass of just that context.</summary>
    static double LogProb(Gpt m, int[] ids, int begin, int t)
    {
        Assert.InRange(t - begin, 1, Ctx);
        using var _ = no_grad();
        m.eval();
        var x = tensor(ids[begin..t].Select(i => (long)i).ToArray()).unsqueeze(0);
        return m.call(x)[0, -1].log_softmax(-1)[ids[t]].item<float>();
    }

    /// <summary>
    /// The stride rule, brute force: windows begin at b0 = max(0, from − ctx), then every stride tokens; a window
    /// beginning at b scores the targets it reaches (up to b + ctx) that no earlier window reached.
    /// </summary>
    static int WindowBegin(int t, int from, int stride)
    {
        int b = Math.Max(0, from - Ctx);
        while (b + Ctx < t) b += stride;
        return b;
    }

    [Fact]
    public void Sequence_log_prob_scores_each_response_token_from_the_last_context_tokens_before_it()
    {
        // Responses as long as the context (the query is cropped away entirely for the last tokens), longer
        // than it, and short: each response token is predicted from the last min(t, ctx) tokens, as the
        // generator sampled it.
        var m = Model();
        var rng = new Random(3);
        int[] Ids(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(256)).ToArray();
        foreach (var (qLen, rLen) in new[] { (6, Ctx), (6, Ctx + 5), (3, 5), (20, 4) })
        {
            var q = Ids(qLen);
            var r = Ids(rLen);
            var ids = q.Concat(r).ToArray();
            double expected = Enumerable.Range(qLen, rLen).Sum(t => LogProb(m, ids, Math.Max(0, t - Ctx), t));
            Assert.True(Math.Abs(expected - PolicyEval.SequenceLogProb(m, q, r)) < 1e-3,
                $"query {qLen}, response {rLen}: expected {expected:F5}, got {PolicyEval.SequenceLogProb(m, q, r):F5}");
        }
    }

    [Fact]
    public void Score_with_stride_1_predicts_every_token_from_the_last_context_tokens()
    {
        var m = Model();
        var tok = new ByteTokenizer();
        var text = "Call me Ishmael. Some years ago, never mind how long precisely, having little money.";
        var ids = tok.Encode(text);
        Assert.True(ids.Length > 4 * Ctx);
        double expected = -Enumerable.Range(1, ids.Length - 1).Average(t => LogProb(m, ids, Math.Max(0, t - Ctx), t));
        var (nats, tokens) = Perplexity.Score(m, tok, text, stride: 1);
        Assert.Equal(ids.Length, tokens);
        Assert.Equal(expected, nats, 4);
    }

    [Fact]
    public void Score_with_a_stride_gives_every_token_at_least_context_minus_stride_plus_one_tokens()
    {
        var m = Model();
        var tok = new ByteTokenizer();
        var text = "It was the best of times, it was the worst of times, it was the age of wisdom.";
        var ids = tok.Encode(text);
        foreach (var stride in new[] { 5, Ctx / 2, Ctx })
        {
            var begins = Enumerable.Range(1, ids.Length - 1).Select(t => (T: t, B: WindowBegin(t, 1, stride))).ToList();
            Assert.All(begins, p => Assert.InRange(p.T - p.B, Math.Min(p.T, Ctx + 1 - stride), Ctx));
            double expected = -begins.Average(p => LogProb(m, ids, p.B, p.T));
            Assert.Equal(expected, Perplexity.Score(m, tok, text, stride).NatsPerToken, 4);
        }
        // The default stride is half the context.
        Assert.Equal(Perplexity.Score(m, tok, text, Ctx / 2).NatsPerToken, Perplexity.Score(m, tok, text).NatsPerToken, 6);
        // A text that fits the context is one window, whatever the stride.
        Assert.Equal(Perplexity.Score(m, tok, "Short text.", 1).NatsPerToken, Perplexity.Score(m, tok, "Short text.", Ctx).NatsPerToken, 5);
        Assert.Contains("stride", Assert.Throws<ChatForgeException>(() => Perplexity.Score(m, tok, text, Ctx + 1)).Message, StringComparison.Ordinal);
    }
}
