using System.Text;

namespace ChatForge.Tests.Support;

/// <summary>Small deterministic English-like corpora for tests (no network).</summary>
public static class TestCorpus
{
    static readonly string[] Words =
    {
        "the", "whale", "sea", "ship", "captain", "union", "state", "people", "congress", "year", "nation", "water",
        "harpoon", "deck", "law", "peace", "war", "trade", "great", "white", "old", "new", "and", "of", "to", "in",
    };

    /// <summary>A .txt corpus of <paramref name="paragraphs"/> paragraphs, written to <paramref name="path"/>.</summary>
    public static string WriteText(string path, int paragraphs = 200, int seed = 1)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        for (int p = 0; p < paragraphs; p++)
        {
            for (int s = 0; s < 4; s++)
            {
                int n = 5 + rng.Next(8);
                var words = Enumerable.Range(0, n).Select(_ => Words[rng.Next(Words.Length)]).ToArray();
                words[0] = char.ToUpperInvariant(words[0][0]) + words[0][1..];
                sb.Append(string.Join(' ', words)).Append(". ");
            }
            sb.Append("\n\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }
}
