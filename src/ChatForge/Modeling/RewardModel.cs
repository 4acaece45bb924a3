using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace ChatForge.Modeling;

/// <summary>
/// A scalar head on a GPT-2 backbone, as Hugging Face's GPT2ForSequenceClassification with one
/// label: the LM head is replaced by score.weight [1, n_embd], read at each sequence's last real
/// (non-padding) token. Used for the reward model and for PPO's value model. Rewards are reported
/// normalised by the mean and standard deviation measured on a reference set (stored with the checkpoint).
/// </summary>
public sealed class RewardModel : nn.Module
{
    [ComponentName(Name = "transformer")] public readonly Gpt Backbone;
    [ComponentName(Name = "score")] readonly Linear _score;
    public double Mean { get; set; }
    public double Std { get; set; } = 1;

    public RewardModel(Gpt backbone) : base("reward_model")
    {
        Backbone = backbone;
        _score = nn.Linear(backbone.Config.NEmbd, 1, hasBias: false, device: backbone.TokenEmbedding.device);
        using (no_grad()) _score.weight!.zero_();
        RegisterComponents();
    }

    public Parameter ScoreWeight => _score.weight!;

    /// <summary>Raw scores (N) of right-padded sequences (N, T), read at index <paramref name="last"/> (N) of each.</summary>
    public Tensor Scores(Tensor ids, Tensor last)
    {
        var h = Backbone.Hidden(ids);                                                    // (N, T, C)
        var idx = last.view(-1, 1, 1).expand(-1, 1, h.shape[2]);
        var at = h.gather(1, idx).squeeze(1);                                            // (N, C)
        return _score.call(at).squeeze(-1);
    }

    /// <summary>The head applied at every position: (N, T) scores (PPO's per-token values).</summary>
    public Tensor AllScores(Tensor ids, Tensor? positions = null, Tensor? mask = null) =>
        _score.call(Backbone.Hidden(ids, positions, mask)).squeeze(-1);

    public double Normalize(double raw) => (raw - Mean) / Std;

    public void Save(string dir, ITokenizer tok, string stage = "reward", JsonObject? more = null)
    {
        var cf = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2ForSequenceClassification"),
            ["num_labels"] = 1,
            ["id2label"] = new JsonObject { ["0"] = "LABEL_0" },
            ["label2id"] = new JsonObject { ["LABEL_0"] = 0 },
            ["pad_token_id"] = Backbone.Config.EosTokenId,
            ["chatforge"] = new JsonObject { ["stage"] = stage, ["reward_mean"] = Mean, ["reward_std"] = Std },
        };
        if (more is not null) foreach (var (k, v) in more) cf["chatforge"]![k] = v?.DeepClone();
        HfCheckpoint.Write(dir, Backbone, tok, new Dictionary<string, Tensor> { ["score.weight"] = ScoreWeight }, cf);
    }

    public static (RewardModel Model, ITokenizer Tokenizer) Load(string dir, Device? device = null)
    {
        var (gpt, tok, extra) = HfCheckpoint.Load(dir, device, allowedExtra: new[] { "score.weight" });
        if (!extra.TryGetValue("score.weight", out var w))
            throw new ChatForgeException($"{dir}: not a reward model (no score.weight in {HfCheckpoint.WeightsFile})");
        var rm = new RewardModel(gpt);
        if (!w.shape.SequenceEqual(rm.ScoreWeight.shape))
            throw new ChatForgeException($"{dir}: score.weight has shape [{string.Join(", ", w.shape)}], expected [1, {gpt.Config.NEmbd}]");
        using (no_grad()) rm.ScoreWeight.copy_(w.to(rm.ScoreWeight.device));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, HfCheckpoint.ConfigFile)));
        rm.Mean = (double?)cfg?["chatforge"]?["reward_mean"] ?? 0;
        rm.Std = (double?)cfg?["chatforge"]?["reward_std"] ?? 1;
        if (rm.Std <= 0) rm.Std = 1;
        rm.eval();
        return (rm, tok);
    }

    /// <summary>Right-pads sequences into (N, T) ids and their last real index (N).</summary>
    public static (Tensor Ids, Tensor Last) Batch(IReadOnlyList<int[]> seqs, int padId, Device device)
    {
        int t = seqs.Max(s => s.Length);
        var ids = new long[seqs.Count * t];
        var last = new long[seqs.Count];
        for (int i = 0; i < seqs.Count; i++)
        {
            for (int j = 0; j < t; j++) ids[i * t + j] = j < seqs[i].Length ? seqs[i][j] : padId;
            last[i] = seqs[i].Length - 1;
        }
        return (tensor(ids, new long[] { seqs.Count, t }, device: device), tensor(last, device: device));
    }

    /// <summary>Normalised rewards of (prompt, response) pairs, batched, without gradients.</summary>
    public double[] Rate(ITokenizer tok, IReadOnlyList<(string Prompt, bool Chat, string Response)> items, int batch = 32, bool normalize = true)
    {
        var result = new List<double>();
        bool was = training;
        eval();
        using var _ = no_grad();
        int ctx = Backbone.Config.NPositions;
        for (int i = 0; i < items.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            var seqs = items.Skip(i).Take(batch).Select(x => Data.Preferences.Encode(tok, x.Prompt, x.Chat, x.Response, ctx).Ids).ToList();
            var (ids, last) = Batch(seqs, tok.EosId(), Backbone.TokenEmbedding.device);
            result.AddRange(Scores(ids, last).cpu().data<float>().ToArray().Select(v => normalize ? Normalize(v) : v));
        }
        if (was) train();
        return result.ToArray();
    }
}
