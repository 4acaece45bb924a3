using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Data;
using static TorchSharp.torch;

namespace ChatForge.Evaluation;

/// <summary>
/// The same held-out measurement for every policy: sample one response per held-out sentiment prompt
/// (temperature 1, fixed seed), then the oracle's mean score and standard deviation, the reward
/// model's mean normalised score, and the KL to the SFT model (the mean over responses of
/// Σ_t log π − log π_SFT, a Monte-Carlo estimate of KL(π‖π_SFT) in nats per response).
/// </summary>
public static class PolicyEval
{
    public static Dictionary<string, double> Run(Gpt policy, Gpt sft, ITokenizer tok, IReadOnlyList<string> prompts, SentimentOracle? oracle,
                                                 RewardModel? rm, int maxNewTokens, long seed)
    {
        var gen = new TextGenerator(policy, tok);
        var comps = gen.Generate(prompts.Select(tok.Encode).ToList(), new SamplingOptions { Temperature = 1.0, MaxNewTokens = maxNewTokens, Seed = seed });
        var texts = comps.Select(c => c.Text).ToList();
        var responses = comps.Select(c => c.StopToken is { } st ? c.Tokens.Append(st).ToArray() : c.Tokens).ToList();
        var m = new Dictionary<string, double>();
        var kl = new List<double>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var q = tok.Encode(prompts[i]);
            if (responses[i].Length == 0) { kl.Add(0); continue; }
            kl.Add(SequenceLogProb(policy, q, responses[i]) - SequenceLogProb(sft, q, responses[i]));
        }
        m["kl_to_sft"] = kl.Average();
        if (oracle is not null)
        {
            var s = texts.Select(oracle.Score).ToList();
            m["oracle_sentiment"] = s.Average();
            m["oracle_sentiment_sd"] = Math.Sqrt(s.Select(x => (x - s.Average()) * (x - s.Average())).Sum() / Math.Max(1, s.Count - 1));
        }
        if (rm is not null) m["rm_score"] = rm.Rate(tok, prompts.Select((p, i) => (p, false, texts[i])).ToList()).Average();
        return m;
    }

    /// <summary>log π(response | query): the sum over the response tokens.</summary>
    public static double SequenceLogProb(Gpt model, int[] query, int[] response)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        model.eval();
        int ctx = model.Config.NPositions;
        var ids = query.Concat(response).ToArray();
        if (ids.Length > ctx) ids = ids[^ctx..];
        int start = ids.Length - response.Length;
        var x = tensor(ids.Select(i => (long)i).ToArray(), device: model.TokenEmbedding.device).unsqueeze(0);
        var lp = model.call(x).log_softmax(-1)[0];                                   // (T, V)
        double total = 0;
        var rows = lp.narrow(0, Math.Max(0, start - 1), response.Length);
        var tg = tensor(response.Select(i => (long)i).ToArray(), device: lp.device).unsqueeze(1);
        total = rows.gather(1, tg).sum().item<float>();
        return total;
    }
}
