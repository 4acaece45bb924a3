using System.Text.RegularExpressions;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// The sentiment task's prompts, as in the DPO paper's IMDb setup: the first few words of sentences
/// from the corpus documents that pretraining held out (same split as pretraining, by its seed).
/// A fixed subset is kept apart for evaluation; the rest feeds preference collection and RL.
/// </summary>
public static partial class SentimentPrompts
{
    public static (List<string> Train, List<string> Eval) Build(Corpora c, long pretrainSeed = 1337, double valFraction = 0.05, int evalCount = 64)
    {
        var docs = TextCorpus.Load(new[] { c.MobyDick, c.Sotu });
        var (_, val) = TextCorpus.Split(docs, valFraction, pretrainSeed);
        var prompts = new List<string>();
        foreach (var d in val)
            foreach (var sentence in SentenceRegex().Split(d.Text.Replace('\n', ' ')))
            {
                var words = sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (words.Length < 8 || words.Any(w => w.Length > 20)) continue;
                int n = 3 + (int)(HashSplit.Unit(7, sentence) * 4); // 3 to 6 words
                prompts.Add(string.Join(' ', words.Take(n)));
            }
        prompts = prompts.Distinct().OrderBy(p => HashSplit.Unit(DemoSuite.TaskSeed, "prompt:" + p)).ToList();
        if (prompts.Count < 2) throw new ChatForgeException($"{c.Root}: too little held-out text to make sentiment prompts");
        int e = Math.Min(evalCount, prompts.Count / 2);
        return (prompts.Skip(e).ToList(), prompts.Take(e).ToList());
    }

    [GeneratedRegex(@"(?<=[.!?])\s+")]
    private static partial Regex SentenceRegex();
}
