using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Modeling;

/// <summary>
/// y = x·Wᵀ + b (W is [out, in], as nn.Linear), plus an optional LoRA adapter. The adapter is not
/// a registered submodule, so the model's named_parameters (and its Hugging Face checkpoint) stay
/// the base model's; <see cref="Lora"/> collects and saves adapter parameters on its own.
/// </summary>
public sealed class GptLinear : nn.Module<Tensor, Tensor>
{
    public Parameter weight;
    public Parameter bias;

    public GptLinear(long inFeatures, long outFeatures) : base("linear")
    {
        weight = new Parameter(empty(outFeatures, inFeatures));
        bias = new Parameter(zeros(outFeatures));
        RegisterComponents();
    }

    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];

    /// <summary>The attached adapter (null: plain linear).</summary>
    public LoraAdapter? Adapter { get; set; }

    public override Tensor forward(Tensor x)
    {
        var y = F.linear(x, weight, bias);
        if (Adapter is { } a) y = y + a.Delta(x, training);
        return y;
    }
}

/// <summary>
/// Low-rank adapter (Hu et al. 2021): Δy = (α/r)·B·A·dropout(x), A [r, in] Kaiming-uniform, B [out, r]
/// zeros, so a fresh adapter changes nothing. PEFT's names and shapes (lora_A.weight [r, in],
/// lora_B.weight [out, r]).
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    public Parameter A { get; }
    public Parameter B { get; }
    public double Scale { get; }
    readonly double _dropout;

    public LoraAdapter(long inFeatures, long outFeatures, int rank, double alpha, double dropout, Device device)
    {
        A = new Parameter(empty(rank, inFeatures, device: device));
        B = new Parameter(zeros(outFeatures, rank, device: device));
        using (no_grad()) nn.init.kaiming_uniform_(A, Math.Sqrt(5)); // PEFT's (and nn.Linear's) init
        Scale = alpha / rank;
        _dropout = dropout;
    }

    public Tensor Delta(Tensor x, bool training)
    {
        var h = _dropout > 0 && training ? F.dropout(x, _dropout, true) : x;
        return F.linear(F.linear(h, A), B) * Scale;
    }

    /// <summary>ΔW = (α/r)·B·A, [out, in].</summary>
    public Tensor DeltaWeight() => B.matmul(A) * Scale;

    public void Dispose() { A.Dispose(); B.Dispose(); }
}
