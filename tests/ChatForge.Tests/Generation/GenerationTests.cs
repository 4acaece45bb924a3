using ChatForge.Checkpoints;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Generation;

public class GenerationTests
{
    /// <summary>A generator on the shared tiny pretrained model of <paramref name="family"/> (gpt2, or llama: pretrained with model.architecture llama).</summary>
    static TextGenerator Gen(out ITokenizer tok, string family = "gpt2")
    {
        var (m, t, _) = HfCheckpoint.Load(TinyRun.ModelDirFor(family));
        tok = t;
        return new TextGenerator(m, t);
    }

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxNewTokens = 12, IgnoreEos = true };

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Rows_with_their_own_options_match_a_batch_with_shared_ones_and_stream_what_they_return(string family)
    {
        var g = Gen(out var tok, family);
        var prompts = new[] { tok.Encode("The whale"), tok.Encode("Sea"), tok.Encode("Call me") };
        foreach (var o in new[] { Greedy, new SamplingOptions { Temperature = 1, TopK = 20, MaxNewTokens = 12, Seed = 9 } })
        {
            // One row: the same tokens as Generate with the same seed.
            var shared = g.Generate(new[] { prompts[0] }, o)[0];
            var pieces = new List<string>();
            var row = g.GenerateRows(new[] { new RowRequest(prompts[0], o, pieces.Add) })[0];
            Assert.Equal(shared.Tokens, row.Tokens);
            Assert.Equal(shared.Text, row.Text);
            Assert.Equal(row.Text, string.Concat(pieces));
            Assert.Equal(row.Text, string.Concat(g.Stream(prompts[0], o)));
        }
        // Rows with different limits, seeds and stop strings in one batch: each as it is alone.
        var requests = new[]
        {
            new RowRequest(prompts[0], Greedy with { MaxNewTokens = 3 }),
            new RowRequest(prompts[1], new SamplingOptions { Temperature = 1, MaxNewTokens = 10, Seed = 4, IgnoreEos = true }),
            new RowRequest(prompts[2], Greedy with { StopStrings = new[] { "e" } }),
        };
        var together = g.GenerateRows(requests);
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = g.GenerateRows(new[] { requests[i] })[0];
            Assert.Equal(alone.Tokens, together[i].Tokens);
            Assert.Equal(alone.Text, together[i].Text);
            Assert.Equal(alone.FinishReason, together[i].FinishReason);
        }
        Assert.Equal("length", together[0].FinishReason);
        Assert.Equal(3, together[0].Tokens.Length);
        Assert.DoesNotContain("e", together[2].Text);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Greedy_is_the_same_with_and_without_the_kv_cache(string family)
    {
        var g = Gen(out var tok, family);
        var p = new[] { tok.Encode("The whale"), tok.Encode("Sea") };
        var a = g.Generate(p, Greedy with { MaxNewTokens = 25 }, useCache: true);
        var b = g.Generate(p, Greedy with { MaxNewTokens = 25 }, useCache: false);
        Assert.Equal(a[0].Tokens, b[0].Tokens);
        Assert.Equal(a[1].Tokens, b[1].Tokens);
        Assert.Equal(25, a[0].Tokens.Length);
        Assert.Equal("length", a[0].FinishReason);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void A_padded_batch_gives_each_prompt_what_it_gets_alone(string family)
    {
        var g = Gen(out var tok, family);
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
        var full = g.Complete("The ", Greedy with { MaxNewTokens = 40 });
        Assert.Equal(40, full.Tokens.Length);
        var stop = full.Text.Substring(10, 2);
        int at = full.Text.IndexOf(stop, StringComparison.Ordinal);
        var cut = g.Complete("The ", Greedy with { MaxNewTokens = 40, StopStrings = new[] { stop } });
        // It stopped: before the token budget, at the first occurrence, with the stop string itself cut off.
        Assert.Equal("stop", cut.FinishReason);
        Assert.InRange(cut.Tokens.Length, 1, 39);
        Assert.Equal(full.Text[..at], cut.Text);
        Assert.DoesNotContain(stop, cut.Text, StringComparison.Ordinal);
        Assert.Equal(full.Tokens[..cut.Tokens.Length], cut.Tokens);
        // A stop token id: the first generated token ends the completion at once.
        var first = g.Complete("The ", Greedy with { MaxNewTokens = 1 }).Tokens[0];
        var none = g.Complete("The ", Greedy with { StopTokenIds = new[] { first } });
        Assert.Empty(none.Tokens);
        Assert.Equal("stop", none.FinishReason);
    }

    [Fact]
    public void Prompts_longer_than_the_context_keep_their_end()
    {
        var g = Gen(out var tok);
        var prompt = tok.Encode(string.Concat(Enumerable.Repeat("The whale and the sea. ", 5)));
        var c = g.Generate(new[] { prompt }, Greedy with { MaxNewTokens = 4 })[0];
        Assert.True(c.PromptTruncated);
        Assert.Equal(32, c.PromptTokens); // the first step sees the context's worth of the prompt's end
        Assert.Equal(NanoGptGreedy(HfCheckpoint.Load(TinyRun.ModelDir).Model, prompt, 4), c.Tokens);
    }

    /// <summary>
    /// A random byte-level model with a 16-token context. Weights drawn with sd 0.3 (not GPT-2's 0.02) make
    /// its greedy tokens depend on the whole window instead of repeating the last token, so a wrong window shows.
    /// </summary>
    static (Gpt Model, ITokenizer Tok) Context16()
    {
        manual_seed(3);
        var config = TinyBase.Config with { NPositions = 16, InitializerRange = 0.3 };
        return (new Gpt(config), new ByteTokenizer());
    }

    /// <summary>nanoGPT's generate, greedy: crop the sequence to its last n_positions tokens, forward, argmax.</summary>
    static int[] NanoGptGreedy(CausalLM m, int[] prompt, int maxNewTokens)
    {
        using var _ = no_grad();
        m.eval();
        var seq = prompt.ToList();
        for (int i = 0; i < maxNewTokens; i++)
        {
            var cond = seq.Skip(Math.Max(0, seq.Count - m.Context)).Select(t => (long)t).ToArray();
            var logits = m.call(tensor(cond).unsqueeze(0));
            seq.Add((int)logits[0, -1].argmax().item<long>());
        }
        return seq.Skip(prompt.Length).ToArray();
    }

    [Fact]
    public void More_new_tokens_than_the_context_slide_the_window_as_nanogpt_does()
    {
        var (m, tok) = Context16();
        var g = new TextGenerator(m, tok);
        var prompt = tok.Encode("The");
        Assert.Equal(3, prompt.Length);
        var cached = g.Generate(new[] { prompt }, Greedy with { MaxNewTokens = 40 }, useCache: true)[0];
        var uncached = g.Generate(new[] { prompt }, Greedy with { MaxNewTokens = 40 }, useCache: false)[0];
        Assert.Equal(40, cached.Tokens.Length);
        Assert.Equal("length", cached.FinishReason);
        Assert.False(cached.PromptTruncated);
        Assert.Equal(3, cached.PromptTokens);
        Assert.Equal(uncached.Tokens, cached.Tokens);
        var reference = NanoGptGreedy(m, prompt, 40);
        Assert.True(reference.Distinct().Count() > 3, "the reference should not be one repeated token");
        Assert.Equal(reference, cached.Tokens);
    }

    [Fact]
    public void A_padded_batch_slides_each_row_as_if_it_were_alone()
    {
        var (m, tok) = Context16();
        var g = new TextGenerator(m, tok);
        var prompts = new[] { tok.Encode("Sea"), tok.Encode("The old captain"), tok.Encode("Peace and war, the ") };
        Assert.True(prompts[2].Length > 16);
        foreach (var useCache in new[] { true, false })
        {
            var batch = g.Generate(prompts, Greedy with { MaxNewTokens = 30 }, useCache);
            for (int r = 0; r < prompts.Length; r++)
            {
                Assert.Equal(NanoGptGreedy(m, prompts[r], 30), batch[r].Tokens);
                Assert.Equal(prompts[r].Length > 16, batch[r].PromptTruncated);
                Assert.Equal(Math.Min(16, prompts[r].Length), batch[r].PromptTokens);
            }
        }
    }

    [Fact]
    public void Generate_verb_warns_about_the_prompt_only_when_it_is_longer_than_the_context()
    {
        using var d = new TempDir();
        var (m, tok) = Context16();
        HfCheckpoint.Write(d["m16"], m, tok);
        var ok = CliRunner.Run("generate", "--model", d["m16"], "--prompt", "The", "--max-new-tokens", "40", "--temperature", "0");
        Assert.Equal(0, ok.Code);
        Assert.DoesNotContain("warning", ok.Err, StringComparison.Ordinal);
        var longPrompt = CliRunner.Run("generate", "--model", d["m16"], "--prompt", "The whale and the sea, the ship", "--max-new-tokens", "4");
        Assert.Equal(0, longPrompt.Code);
        Assert.Contains("warning: the prompt was longer than the context; kept its last 16 tokens", longPrompt.Err, StringComparison.Ordinal);
    }

    [Fact]
    public void Any_special_token_ends_a_completion_and_is_reported_not_emitted()
    {
        var g = Gen(out var tok);
        // Make the model's next token a special one by asking greedily after many samples: use stop ids to find what it emits.
        var o = new SamplingOptions { Temperature = 1.0, MaxNewTokens = 30, Seed = 11 };
        var comps = g.Generate(Enumerable.Range(0, 40).Select(i => tok.Encode($"x{i}")).ToList(), o);
        Assert.Contains(comps, c => c.FinishReason == "eos"); // something did stop, so the checks below check something
        Assert.All(comps, c => Assert.DoesNotContain(c.Tokens, t => tok.Specials.Values.Contains(t)));
        Assert.All(comps.Where(c => c.FinishReason != "length"), c => Assert.True(c.StopToken is { } s && tok.Specials.Values.Contains(s)));
        Assert.All(comps.Where(c => c.FinishReason == "length"), c => Assert.Null(c.StopToken));
    }
}
