using ChatForge.Checkpoints;
using ChatForge.Modeling;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Modeling;

public class GptTests
{
    static readonly GptConfig Small = new() { VocabSize = 50, NPositions = 16, NEmbd = 16, NLayer = 2, NHead = 2, BosTokenId = 0, EosTokenId = 0 };

    static Gpt Model(GptConfig? c = null) { manual_seed(3); var m = new Gpt(c ?? Small); m.eval(); return m; }

    [Fact]
    public void Parameter_names_and_shapes_follow_huggingface_gpt2()
    {
        var sd = HfCheckpoint.HfStateDict(Model());
        var expected = new List<(string, long[])>
        {
            ("transformer.wte.weight", new long[] { 50, 16 }), ("transformer.wpe.weight", new long[] { 16, 16 }),
            ("transformer.ln_f.weight", new long[] { 16 }), ("transformer.ln_f.bias", new long[] { 16 }),
        };
        for (int i = 0; i < 2; i++)
            expected.AddRange(new (string, long[])[]
            {
                ($"transformer.h.{i}.ln_1.weight", new long[] { 16 }), ($"transformer.h.{i}.ln_1.bias", new long[] { 16 }),
                ($"transformer.h.{i}.attn.c_attn.weight", new long[] { 16, 48 }), ($"transformer.h.{i}.attn.c_attn.bias", new long[] { 48 }),
                ($"transformer.h.{i}.attn.c_proj.weight", new long[] { 16, 16 }), ($"transformer.h.{i}.attn.c_proj.bias", new long[] { 16 }),
                ($"transformer.h.{i}.ln_2.weight", new long[] { 16 }), ($"transformer.h.{i}.ln_2.bias", new long[] { 16 }),
                ($"transformer.h.{i}.mlp.c_fc.weight", new long[] { 16, 64 }), ($"transformer.h.{i}.mlp.c_fc.bias", new long[] { 64 }),
                ($"transformer.h.{i}.mlp.c_proj.weight", new long[] { 64, 16 }), ($"transformer.h.{i}.mlp.c_proj.bias", new long[] { 16 }),
            });
        Assert.Equal(expected.Select(e => e.Item1).Order(), sd.Keys.Order());
        foreach (var (name, shape) in expected) Assert.Equal(shape, sd[name].shape);
        Assert.Equal(Small.ParameterCount, sd.Values.Sum(t => t.numel()));
    }

    [Fact]
    public void Future_tokens_do_not_change_past_logits()
    {
        var m = Model();
        var a = tensor(new long[] { 1, 2, 3, 4, 5, 6, 7, 8 }, new long[] { 1, 8 });
        var b = a.clone(); b[0, 5] = 40;
        var la = m.call(a); var lb = m.call(b);
        Assert.True(la.narrow(1, 0, 5).allclose(lb.narrow(1, 0, 5), 1e-5, 1e-6));
        Assert.False(la.narrow(1, 5, 3).allclose(lb.narrow(1, 5, 3), 1e-5, 1e-6));
    }

    [Fact]
    public void Kv_cache_gives_the_same_logits_as_a_full_forward()
    {
        var m = Model();
        var ids = tensor(new long[] { 3, 9, 1, 4, 1, 5, 9, 2, 6, 5 }, new long[] { 1, 10 });
        using var _ = no_grad();
        var full = m.call(ids);
        using var cache = m.NewCache(1, Small.NPositions, CPU);
        var first = m.Logits(m.Hidden(ids.narrow(1, 0, 4), cache: cache));   // prefill 4
        var chunk = m.Logits(m.Hidden(ids.narrow(1, 4, 3), cache: cache));   // 3 at once after a cache
        var steps = new List<Tensor> { first, chunk };
        for (int t = 7; t < 10; t++) steps.Add(m.Logits(m.Hidden(ids.narrow(1, t, 1), cache: cache)));
        Assert.Equal(10, cache.Length);
        Assert.True(full.allclose(cat(steps, 1), 1e-5, 1e-5));
    }

    [Fact]
    public void Left_padding_with_mask_and_positions_matches_the_unpadded_sequence()
    {
        var m = Model();
        using var _ = no_grad();
        var ids = new long[] { 7, 8, 9, 10 };
        var alone = m.call(tensor(ids, new long[] { 1, 4 })).select(1, -1);
        var padded = tensor(new long[] { 0, 0, 7, 8, 9, 10 }, new long[] { 1, 6 });
        var keyMask = tensor(new[] { false, false, true, true, true, true }, new long[] { 1, 6 });
        var pos = (keyMask.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0);
        var mask = ChatForge.Data.AttentionMasks.PaddedCausal(keyMask);
        var logits = m.Logits(m.Hidden(padded, pos, mask)).select(1, -1);
        Assert.True(alone.allclose(logits, 1e-5, 1e-5));
    }

    [Fact]
    public void Sequences_longer_than_the_context_are_an_error()
    {
        var m = Model();
        var e = Assert.Throws<ChatForgeException>(() => m.call(zeros(1, 17, dtype: ScalarType.Int64)));
        Assert.Contains("longer than the model's context (16)", e.Message);
    }

    [Fact]
    public void Config_validation_names_the_key()
    {
        var e = Assert.Throws<ChatForgeException>(() => (Small with { NEmbd = 15 }).Validate("cfg"));
        Assert.Contains("'n_embd' = 15", e.Message);
    }
}
