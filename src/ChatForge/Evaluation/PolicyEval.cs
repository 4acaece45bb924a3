using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Data;

namespace ChatForge.Evaluation;

/// <summary>
/// The same held-out measurement for every policy: sample one response per held-out sentiment prompt
/// (temperature 1, fixed seed), then the oracle's mean score and standard deviation, the reward
/// model's mean normalised score, and the KL to the SFT model (the mean over responses of
/// Σ_t log π − log π_SFT, a Monte-Carlo estimate of KL(π‖π_SFT) in nats per response).
/// </summary>
public static class PolicyEval
{
    public static Dictionary<string, double> Run(CausalLM policy, CausalLM sft, ITokenizer tok, IReadOnlyList<string> prompts, SentimentOracle? oracle,
                                                 RewardModel? rm, int maxNewTokens, long seed) =>
        Run(policy, sft, tok, prompts.Select(p => (ChatPrompt)p).ToList(), chat: false, oracle is null ? null : (ChatPrompt _, string response) => oracle.Score(response), "oracle_sentiment", rm, maxNewTokens, seed);

    /// <summary>
    /// The same measurement for plain-text or chat prompts (conversations under the chat template, a response ending
    /// at the end-of-turn token) with any oracle of (prompt, response): its mean is <paramref name="oracleKey"/>, its
    /// standard deviation <paramref name="oracleKey"/>_sd.
    /// </summary>
    public static Dictionary<string, double> Run(CausalLM policy, CausalLM sft, ITokenizer tok, IReadOnlyList<ChatPrompt> prompts, bool chat,
                                                 Func<ChatPrompt, string, double>? oracle, string oracleKey, RewardModel? rm, int maxNewTokens, long seed)
    {
        var gen = new TextGenerator(policy, tok);
        var queries = prompts.Select(p => ChatTemplate.EncodePrompt(tok, p, chat)).ToList();
        var options = new SamplingOptions { Temperature = 1.0, MaxNewTokens = maxNewTokens, Seed = seed };
        if (chat) options = options with { StopTokenIds = new[] { tok.EndOfTurnId() } };
        var comps = gen.Generate(queries, options);
        var texts = comps.Select(c => c.Text).ToList();
        var responses = comps.Select(c => c.StopToken is { } st ? c.Tokens.Append(st).ToArray() : c.Tokens).ToList();
        var m = new Dictionary<string, double>();
        var kl = new List<double>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var q = queries[i];
            if (q.Length == 0) q = new[] { tok.EosId() };   // what the generator conditions an empty prompt on
            if (responses[i].Length == 0) { kl.Add(0); continue; }
            kl.Add(SequenceLogProb(policy, q, responses[i]) - SequenceLogProb(sft, q, responses[i]));
        }
        m["kl_to_sft"] = kl.Average();
        if (oracle is not null)
        {
            var s = texts.Select((t, i) => oracle(prompts[i], t)).ToList();
            m[oracleKey] = s.Average();
            m[oracleKey + "_sd"] = Math.Sqrt(s.Select(x => (x - s.Average()) * (x - s.Average())).Sum() / Math.Max(1, s.Count - 1));
        }
        if (rm is not null) m["rm_score"] = rm.Rate(tok, prompts.Select((p, i) => (p, chat, texts[i])).ToList()).Average();
        return m;
    }

    /// <summary>
    /// log π(response | query): the sum over the response tokens, each predicted from the last min(t, ctx)
    /// tokens before it, as the generator sampled it. When query + response is longer than the context,
    /// no single window holds every response token with its context, so the window slides one token at a
    /// time past the first (one more forward pass per token; the first window covers the rest).
    /// </summary>
    public static double SequenceLogProb(CausalLM model, int[] query, int[] response)
    {
        if (query.Length == 0) throw new ArgumentException("the query must have at least one token", nameof(query));
        if (response.Length == 0) return 0;
        return Perplexity.SlidingLogProbs(model, query.Concat(response).ToArray(), query.Length, stride: 1).Sum();
    }
}
