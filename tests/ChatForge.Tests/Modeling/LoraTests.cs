using ChatForge.Checkpoints;
using ChatForge.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Modeling;

public class LoraTests
{
    static readonly GptConfig Small = new() { VocabSize = 50, NPositions = 16, NEmbd = 16, NLayer = 2, NHead = 2, BosTokenId = 0, EosTokenId = 0 };
    static readonly LoraConfig Adapters = new() { R = 2, LoraAlpha = 4, LoraDropout = 0 };

    static Gpt Model() { manual_seed(3); var m = new Gpt(Small); m.eval(); return m; }

    [Fact]
    public void Adapters_follow_the_model_when_it_moves()
    {
        // Given a model with adapters attached (as SFT does before moving the model to its device)
        using var m = Model();
        Lora.Attach(m, Adapters);
        // When the model is moved (a dtype change takes the same path as a device change: Module.to)
        m.to(ScalarType.Float64);
        // Then every adapter tensor moved with it, and the model still runs
        Assert.All(Lora.Parameters(m), p => Assert.Equal(ScalarType.Float64, p.Param.dtype));
        using var logits = m.call(tensor(new long[] { 1, 2, 3 }).unsqueeze(0));
        Assert.Equal(ScalarType.Float64, logits.dtype);
    }

    [Fact]
    public void Adapters_are_registered_submodules_but_stay_out_of_the_checkpoint()
    {
        using var m = Model();
        var baseNames = HfCheckpoint.HfStateDict(m).Keys.ToList();
        Lora.Attach(m, Adapters);
        // The adapters are part of the module tree (so to(), train() and eval() reach them) …
        var names = m.named_parameters().Select(p => p.name).ToList();
        Assert.Equal(4 * 2 * Small.NLayer, names.Count(Lora.IsAdapterParameter)); // c_attn, both c_proj, c_fc: 4 linears × (lora_A, lora_B) per layer
        m.train();
        Assert.All(m.Linears().Where(l => l.Linear.Adapter is not null), l => Assert.True(l.Linear.Adapter!.training));
        // … while the Hugging Face state dict keeps exactly the base model's tensors.
        Assert.Equal(baseNames, HfCheckpoint.HfStateDict(m).Keys.ToList());
    }

    [Fact]
    public void Merged_state_dict_holds_base_weight_plus_scaled_B_A()
    {
        using var m = Model();
        Lora.Attach(m, Adapters);
        var (path, lin) = m.Linears().First(l => l.Linear.Adapter is not null);
        using (no_grad()) lin.Adapter!.B.normal_();
        var expected = lin.weight.detach() + lin.Adapter.B.matmul(lin.Adapter.A) * (Adapters.LoraAlpha / Adapters.R);
        var merged = HfCheckpoint.HfStateDict(m, mergeLora: true)["transformer." + path + ".weight"];
        Assert.True(merged.t().allclose(expected, rtol: 1e-5, atol: 1e-6)); // Conv1D layout: [in, out]
    }
}
