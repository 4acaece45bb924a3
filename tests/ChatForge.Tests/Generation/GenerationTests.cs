using ChatForge.Checkpoints;
using ChatForge.Generation;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Generation;

public class GenerationTests
{
    static TextGenerator Gen(out ITokenizer tok)
    {
        var (m, t, _) = HfCheckpoint.Load(TinyRun.ModelDir);
        tok = t;
        return new TextGenerator(m, t);
    }

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxNewTokens = 12, IgnoreEos = true };

    [Fact]
    public void Greedy_is_the_same_with_and_without_the_kv_cache()
    {
        var g = Gen(out var tok);
        var p = new[] { tok.Encode("The whale"), tok.Encode("Sea") };
        var a = g.Generate(p, Greedy with { MaxNewTokens = 25 }, useCache: true);
        var b = g.Generate(p, Greedy with { MaxNewTokens = 25 }, useCache: false);
        Assert.Equal(a[0].Tokens, b[0].Tokens);
        Assert.Equal(a[1].Tokens, b[1].Tokens);
        Assert.Equal(25, a[0].Tokens.Length);
        Assert.Equal("length", a[0].FinishReason);
    }

    [Fact]
    public void A_padded_batch_gives_each_prompt_what_it_gets_alone()
    {
        var g = Gen(out var tok);
        var prompts = new[] { tok.Encode("The old captain of the"), tok.Encode("Peace") };
        var batch = g.Generate(prompts, Greedy);
        Assert.Equal(g.Generate(new[] { prompts[0] }, Greedy)[0].Tokens, batch[0].Tokens);
        Assert.Equal(g.Generate(new[] { prompts[1] }, Greedy)[0].Tokens, batch[1].Tokens);
    }

    [Fact]
    public void Seeded_sampling_is_reproducible_and_top_k_1_is_greedy()
    {
        var g = Gen(out _);
        var o = new SamplingOptions { Temperature = 1.0, MaxNewTokens = 20, Seed = 5, IgnoreEos = true };
        Assert.Equal(g.Complete("The ", o).Text, g.Complete("The ", o).Text);
        Assert.NotEqual(g.Complete("The ", o).Text, g.Complete("The ", o with { Seed = 6 }).Text);
        Assert.Equal(g.Complete("The ", Greedy).Text, g.Complete("The ", o with { TopK = 1, MaxNewTokens = 12 }).Text);
        Assert.Equal(g.Complete("The ", Greedy).Text, g.Complete("The ", o with { TopP = 1e-6, MaxNewTokens = 12 }).Text);
    }

    [Fact]
    public void Top_k_and_top_p_keep_only_the_allowed_tokens()
    {
        // Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps the first two; top-k 3 the first three.
        var logits = tensor(new float[] { 0.5f, 0.3f, 0.15f, 0.05f }).log().unsqueeze(0).repeat(2000, 1);
        using var gen = new TorchSharp.torch.Generator(1);
        var p = TextGenerator.Sample(logits, new SamplingOptions { Temperature = 1, TopP = 0.7 }, gen).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1 }, p.Distinct().Order());
        Assert.InRange(p.Count(x => x == 0) / 2000.0, 0.55, 0.70); // 0.5 / 0.8 = 0.625
        var k = TextGenerator.Sample(logits, new SamplingOptions { Temperature = 1, TopK = 3 }, gen).data<long>().ToArray();
        Assert.Equal(new long[] { 0, 1, 2 }, k.Distinct().Order());
    }

    [Fact]
    public void Stop_strings_cut_the_completion_and_eos_ends_it()
    {
        var g = Gen(out var tok);
        var full = g.Complete("The ", Greedy with { MaxNewTokens = 40 }).Text;
        var stop = full.Substring(10, 2);
        var cut = g.Complete("The ", Greedy with { MaxNewTokens = 40, StopStrings = new[] { stop } });
        Assert.Equal("stop", cut.FinishReason);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        // A stop token id: the first generated token ends the completion at once.
        var first = g.Complete("The ", Greedy with { MaxNewTokens = 1 }).Tokens[0];
        var none = g.Complete("The ", Greedy with { StopTokenIds = new[] { first } });
        Assert.Empty(none.Tokens);
        Assert.Equal("stop", none.FinishReason);
    }

    [Fact]
    public void Prompts_longer_than_the_context_keep_their_end()
    {
        var g = Gen(out _);
        var c = g.Complete(new string('x', 100), Greedy with { MaxNewTokens = 4 });
        Assert.True(c.PromptTruncated);
        Assert.Equal(32 - 4, c.PromptTokens);
        Assert.Equal(4, c.Tokens.Length);
    }

    [Fact]
    public void Any_special_token_ends_a_completion_and_is_reported_not_emitted()
    {
        var g = Gen(out var tok);
        // Make the model's next token a special one by asking greedily after many samples: use stop ids to find what it emits.
        var o = new SamplingOptions { Temperature = 1.0, MaxNewTokens = 30, Seed = 11 };
        var comps = g.Generate(Enumerable.Range(0, 40).Select(i => tok.Encode($"x{i}")).ToList(), o);
        Assert.All(comps, c => Assert.DoesNotContain(c.Tokens, t => tok.Specials.Values.Contains(t)));
        Assert.All(comps.Where(c => c.FinishReason != "length"), c => Assert.True(c.StopToken is { } s && tok.Specials.Values.Contains(s)));
        Assert.All(comps.Where(c => c.FinishReason == "length"), c => Assert.Null(c.StopToken));
    }
}
