using ChatForge.Data;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using static TorchSharp.torch;

namespace ChatForge.Generation;

/// <summary>Scoring (prompt, response) texts with a reward model, as the policy's chat or plain-text format encodes them.</summary>
public static class RewardScoring
{
    /// <summary>Normalised rewards of (prompt, response) pairs, batched, without gradients.</summary>
    public static double[] Rate(this RewardModel rm, ITokenizer tok, IReadOnlyList<(ChatPrompt Prompt, bool Chat, string Response)> items, int batch = 32, bool normalize = true)
    {
        var result = new List<double>();
        bool was = rm.training;
        rm.eval();
        using var _ = no_grad();
        int ctx = rm.Backbone.Context;
        for (int i = 0; i < items.Count; i += batch)
        {
            using var scope = NewDisposeScope();
            var seqs = items.Skip(i).Take(batch).Select(x => Preferences.Encode(tok, x.Prompt, x.Chat, x.Response, ctx).Ids).ToList();
            var (ids, last) = CausalBatch.Sequences(seqs, tok.EosId(), rm.Backbone.TokenEmbedding.device);
            result.AddRange(rm.ScoresAt(ids, last).cpu().data<float>().ToArray().Select(v => normalize ? rm.Normalize(v) : v));
        }
        if (was) rm.train();
        return result.ToArray();
    }
}
