using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Tokenization;

namespace ChatForge.Labeling;

/// <summary>What self-instruct kept and why it dropped the rest.</summary>
public sealed record SelfInstructReport(int Generated, int Kept, IReadOnlyDictionary<string, int> Dropped);

/// <summary>
/// Synthetic instruction data (Wang et al. 2022, self-instruct): prompt a model with a few seed
/// instruction/output pairs, let it write a new pair, parse it, and keep it only if it is well
/// formed, of sensible length, and not a near-duplicate (ROUGE-L ≥ threshold) of any instruction
/// already in the pool. Works with any checkpoint; small models yield little, and the report says why.
/// </summary>
public static class SelfInstruct
{
    public static (List<SftExample> Kept, SelfInstructReport Report) Run(TextGenerator gen, ITokenizer tok, IReadOnlyList<SftExample> seeds,
        int attempts, long seed, double rougeThreshold = 0.7, int shots = 3, int batch = 16)
    {
        var pairs = seeds.Where(s => s.Messages is { Count: >= 2 }).Select(s => (I: s.Messages![0].Content, O: s.Messages![^1].Content)).ToList();
        if (pairs.Count < shots) throw new ChatForgeException($"self-instruct needs at least {shots} seed instruction/output pairs, got {pairs.Count}");
        var rng = new Random((int)(seed & 0x7fffffff));
        var pool = pairs.Select(p => Words(p.I)).ToList();
        var kept = new List<SftExample>();
        var dropped = new Dictionary<string, int> { ["format"] = 0, ["length"] = 0, ["duplicate"] = 0 };
        int generated = 0;
        var o = new SamplingOptions { Temperature = 1.0, TopP = 0.9, MaxNewTokens = 64, Seed = seed, StopStrings = new[] { "\n\n", "Instruction:" } };
        while (generated < attempts)
        {
            int n = Math.Min(batch, attempts - generated);
            var prompts = Enumerable.Range(0, n).Select(_ =>
            {
                var shotsText = string.Concat(pairs.OrderBy(_ => rng.Next()).Take(shots).Select(p => $"Instruction: {p.I}\nOutput: {p.O}\n\n"));
                return tok.Encode(shotsText + "Instruction:");
            }).ToList();
            foreach (var c in gen.Generate(prompts, o with { Seed = seed + generated }))
            {
                generated++;
                var (example, reason) = Judge(c.Text, pool, rougeThreshold);
                if (example is null) { dropped[reason!]++; continue; }
                pool.Add(Words(example.Messages![0].Content));
                kept.Add(example);
            }
        }
        return (kept, new SelfInstructReport(generated, kept.Count, dropped));
    }

    /// <summary>
    /// Parses what the model wrote after "Instruction:" into an instruction/output pair and judges it:
    /// "format" without "\nOutput:", "length" unless the instruction has 3–40 words and the output is non-empty with at most 60,
    /// "duplicate" when its instruction's ROUGE-L against one in <paramref name="pool"/> reaches the threshold.
    /// </summary>
    public static (SftExample? Example, string? DropReason) Judge(string text, IReadOnlyList<string[]> pool, double rougeThreshold)
    {
        int at = text.IndexOf("\nOutput:", StringComparison.Ordinal);
        if (at < 0) return (null, "format");
        var instruction = text[..at].Trim();
        var output = text[(at + 8)..].Trim();
        var iw = Words(instruction);
        if (iw.Length < 3 || iw.Length > 40 || output.Length == 0 || Words(output).Length > 60) return (null, "length");
        if (pool.Any(p => RougeL(iw, p) >= rougeThreshold)) return (null, "duplicate");
        return (SftExample.PromptCompletion(instruction, output, "self-instruct"), null);
    }

    public static string[] Words(string s) =>
        s.ToLowerInvariant().Split(new[] { ' ', '\n', '\t', '.', ',', '?', '!', ';', ':', '"', '\'' }, StringSplitOptions.RemoveEmptyEntries);

    /// <summary>ROUGE-L F-measure: the longest common subsequence of words, as precision and recall.</summary>
    public static double RougeL(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        if (a.Count == 0 || b.Count == 0) return 0;
        var dp = new int[a.Count + 1, b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
            for (int j = 1; j <= b.Count; j++)
                dp[i, j] = a[i - 1] == b[j - 1] ? dp[i - 1, j - 1] + 1 : Math.Max(dp[i - 1, j], dp[i, j - 1]);
        double lcs = dp[a.Count, b.Count];
        if (lcs == 0) return 0;
        double p = lcs / a.Count, r = lcs / b.Count;
        return 2 * p * r / (p + r);
    }
}
