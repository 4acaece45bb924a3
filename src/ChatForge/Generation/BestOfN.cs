using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Generation;

/// <summary>
/// Best-of-N sampling: N responses per prompt from the policy (one batch, KV cache), the one the
/// reward model scores highest is returned. Its KL to the policy is log N − (N−1)/N (Stiennon et al. 2020).
/// </summary>
public static class BestOfN
{
    public sealed record Candidate(string Text, double Reward);

    public static double Kl(int n) => Math.Log(n) - (n - 1.0) / n;

    /// <summary>N candidates per prompt with their normalised rewards, in sampling order.</summary>
    public static List<List<Candidate>> Sample(TextGenerator gen, RewardModel rm, ITokenizer tok, IReadOnlyList<ChatPrompt> prompts, bool chat, int n,
                                               SamplingOptions o, int batch = 64)
    {
        var encoded = prompts.SelectMany(p => Enumerable.Repeat(ChatTemplate.EncodePrompt(tok, p, chat), n)).ToList();
        var so = chat ? o with { StopTokenIds = o.StopTokenIds.Append(tok.EndOfTurnId()).ToArray() } : o;
        var texts = new List<string>();
        for (int i = 0; i < encoded.Count; i += batch)
            texts.AddRange(gen.Generate(encoded.Skip(i).Take(batch).ToList(), so with { Seed = (o.Seed ?? 0) + i }).Select(c => c.Text));
        var rewards = rm.Rate(tok, texts.Select((t, i) => (prompts[i / n], chat, t)).ToList());
        return prompts.Select((_, p) => Enumerable.Range(0, n).Select(j => new Candidate(texts[p * n + j], rewards[p * n + j])).ToList()).ToList();
    }

    /// <summary>The highest-reward candidate among the first <paramref name="n"/>.</summary>
    public static Candidate Best(IReadOnlyList<Candidate> candidates, int n) => candidates.Take(n).MaxBy(c => c.Reward)!;
}
