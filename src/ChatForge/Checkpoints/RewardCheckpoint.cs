using System.Text.Json.Nodes;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>
/// A reward (or value) model directory: Hugging Face's GPT2ForSequenceClassification (or LlamaForSequenceClassification,
/// Qwen2ForSequenceClassification) layout, the backbone's files plus score.weight [1, hidden], and the normalisation (mean, std) under config.json's "chatforge" key.
/// </summary>
public static class RewardCheckpoint
{
    public static void Save(this RewardModel rm, string dir, ITokenizer tok, string stage = "reward", JsonObject? more = null)
    {
        var cf = new JsonObject
        {
            ["architectures"] = new JsonArray(rm.Backbone.ModelType switch { "llama" => "LlamaForSequenceClassification", "qwen2" => "Qwen2ForSequenceClassification", _ => "GPT2ForSequenceClassification" }),
            ["num_labels"] = 1,
            ["id2label"] = new JsonObject { ["0"] = "LABEL_0" },
            ["label2id"] = new JsonObject { ["LABEL_0"] = 0 },
            ["pad_token_id"] = tok.EosId(),
            ["chatforge"] = new JsonObject { ["stage"] = stage, ["reward_mean"] = rm.Mean, ["reward_std"] = rm.Std },
        };
        if (more is not null) foreach (var (k, v) in more) cf["chatforge"]![k] = v?.DeepClone();
        HfCheckpoint.Write(dir, rm.Backbone, tok, new Dictionary<string, Tensor> { ["score.weight"] = rm.ScoreWeight }, cf, withoutLmHead: true);
    }

    public static (RewardModel Model, ITokenizer Tokenizer) Load(string dir, Device? device = null)
    {
        var (gpt, tok, extra) = HfCheckpoint.Load(dir, device, allowedExtra: new[] { "score.weight" }, withoutLmHead: true);
        if (!extra.TryGetValue("score.weight", out var w))
            throw new ChatForgeException($"{dir}: not a reward model (no score.weight in {HfCheckpoint.WeightsFile})");
        var rm = new RewardModel(gpt);
        if (!w.shape.SequenceEqual(rm.ScoreWeight.shape))
            throw new ChatForgeException($"{dir}: score.weight has shape [{string.Join(", ", w.shape)}], expected [1, {gpt.HiddenSize}]");
        using (no_grad()) rm.ScoreWeight.copy_(w.to(rm.ScoreWeight.device));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, HfCheckpoint.ConfigFile)));
        rm.Mean = (double?)cfg?["chatforge"]?["reward_mean"] ?? 0;
        rm.Std = (double?)cfg?["chatforge"]?["reward_std"] ?? 1;
        if (rm.Std <= 0) rm.Std = 1;
        rm.eval();
        return (rm, tok);
    }
}
