using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ChatForge.Modeling;

/// <summary>
/// y = x·Wᵀ (+ b) (W is [out, in], as nn.Linear; the bias is optional, as in Llama's projections), plus an optional LoRA adapter. The adapter is a
/// registered submodule named <see cref="Lora.ModuleName"/>, so to(), train() and eval() reach it;
/// checkpoint code leaves its parameters out of the base model's tensors (<see cref="Lora.IsAdapterParameter"/>).
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    public Parameter weight;
    public Parameter? bias;

    public LoraLinear(long inFeatures, long outFeatures, bool hasBias = true) : base("linear")
    {
        weight = new Parameter(empty(outFeatures, inFeatures));
        bias = hasBias ? new Parameter(zeros(outFeatures)) : null;
        RegisterComponents();
    }

    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];

    LoraAdapter? _adapter;

    /// <summary>The attached adapter (null: plain linear). Setting it (re)registers the submodule.</summary>
    public LoraAdapter? Adapter
    {
        get => _adapter;
        set
        {
            register_module(Lora.ModuleName, null!); // removes a registered adapter
            _adapter = value;
            if (value is not null) register_module(Lora.ModuleName, value);
        }
    }

    public override Tensor forward(Tensor x)
    {
        var y = F.linear(x, weight, bias);
        if (_adapter is { } a) y = y + a.call(x);
        return y;
    }
}

/// <summary>
/// Low-rank adapter (Hu et al. 2021): Δy = (α/r)·B·A·dropout(x), A [r, in] Kaiming-uniform, B [out, r]
/// zeros, so a fresh adapter changes nothing. PEFT's names and shapes (lora_A.weight [r, in],
/// lora_B.weight [out, r]).
/// </summary>
public sealed class LoraAdapter : nn.Module<Tensor, Tensor>
{
    // Fields, not properties: Module.to() replaces moved parameters through their fields.
    [ComponentName(Name = "lora_A")] Parameter _a;
    [ComponentName(Name = "lora_B")] Parameter _b;
    readonly double _dropout;

    public LoraAdapter(long inFeatures, long outFeatures, int rank, double alpha, double dropout, Device device) : base(Lora.ModuleName)
    {
        _a = new Parameter(empty(rank, inFeatures, device: device));
        _b = new Parameter(zeros(outFeatures, rank, device: device));
        using (no_grad()) nn.init.kaiming_uniform_(_a, Math.Sqrt(5)); // PEFT's (and nn.Linear's) init
        Scale = alpha / rank;
        _dropout = dropout;
        RegisterComponents();
    }

    /// <summary>lora_A.weight [r, in].</summary>
    public Parameter A => _a;
    /// <summary>lora_B.weight [out, r].</summary>
    public Parameter B => _b;
    /// <summary>α / r.</summary>
    public double Scale { get; }

    /// <summary>Δy = (α/r)·B·A·dropout(x); dropout only in training mode.</summary>
    public override Tensor forward(Tensor x)
    {
        var h = _dropout > 0 && training ? F.dropout(x, _dropout, true) : x;
        return F.linear(F.linear(h, _a), _b) * Scale;
    }

    /// <summary>ΔW = (α/r)·B·A, [out, in].</summary>
    public Tensor DeltaWeight() => _b.matmul(_a) * Scale;
}
