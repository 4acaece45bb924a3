using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace ChatForge.Modeling;

/// <summary>
/// A scalar head on a decoder backbone of either family, as Hugging Face's GPT2ForSequenceClassification or
/// LlamaForSequenceClassification with one label: the LM head is replaced by score.weight [1, hidden], read at each sequence's last real
/// (non-padding) token. Used for the reward model and for PPO's value model. Rewards are reported
/// normalised by the mean and standard deviation measured on a reference set (stored with the checkpoint).
/// </summary>
public sealed class RewardModel : nn.Module
{
    [ComponentName(Name = "transformer")] public readonly CausalLM Backbone;
    [ComponentName(Name = "score")] readonly Linear _score;
    public double Mean { get; set; }
    public double Std { get; set; } = 1;

    public RewardModel(CausalLM backbone) : base("reward_model")
    {
        Backbone = backbone;
        _score = nn.Linear(backbone.HiddenSize, 1, hasBias: false, device: backbone.TokenEmbedding.device);
        using (no_grad()) _score.weight!.zero_();
        RegisterComponents();
    }

    public Parameter ScoreWeight => _score.weight!;

    /// <summary>What training moves: the backbone and the head, not the backbone's LM-head-only weights (an untied lm_head), which scores never read.</summary>
    public IEnumerable<(string Name, Parameter Param)> TrainableParameters()
    {
        var unused = Backbone.LmHeadOnly.Select(n => "transformer." + n).ToHashSet();
        return named_parameters().Where(p => !unused.Contains(p.name)).Select(p => (p.name, p.parameter));
    }

    /// <summary>Raw scores (N) of right-padded sequences (N, T), read at index <paramref name="last"/> (N) of each.</summary>
    public Tensor ScoresAt(Tensor ids, Tensor last)
    {
        var h = Backbone.Hidden(ids);                                                    // (N, T, C)
        var idx = last.view(-1, 1, 1).expand(-1, 1, h.shape[2]);
        var at = h.gather(1, idx).squeeze(1);                                            // (N, C)
        return _score.call(at).squeeze(-1);
    }

    /// <summary>The head applied at every position: (N, T) scores (PPO's per-token values).</summary>
    public Tensor ScoresPerPosition(Tensor ids, Tensor? positions = null, Tensor? mask = null) =>
        _score.call(Backbone.Hidden(ids, positions, mask)).squeeze(-1);

    public double Normalize(double raw) => (raw - Mean) / Std;
}
