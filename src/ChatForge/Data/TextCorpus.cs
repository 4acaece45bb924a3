using System.Security.Cryptography;
using System.Text;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>One document of a corpus (a chapter, an address, a user file's block).</summary>
public sealed record Document(string Source, string Text);

/// <summary>
/// Loading plain-text corpora and splitting them into train and validation by document. A
/// document goes to validation when a seeded hash of its *content* falls under the fraction, so
/// the split is fixed by the seed, does not depend on file order, and no text is in both halves.
/// </summary>
public static class TextCorpus
{
    /// <summary>.txt files (split into blocks of about 4 KB at blank lines) or {"text"} JSONL (a document per line).</summary>
    public static List<Document> Load(IEnumerable<string> paths)
    {
        var docs = new List<Document>();
        foreach (var path in paths)
        {
            if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            {
                foreach (var (line, row) in Jsonl.Read(path))
                {
                    var text = row.String("text", path, line);
                    if (text.Length > 0) docs.Add(new Document($"{path}:{line}", text));
                }
            }
            else
            {
                var text = Jsonl.ReadText(path).Replace("\r\n", "\n", StringComparison.Ordinal);
                int n = 0;
                foreach (var block in Blocks(text, 4096)) docs.Add(new Document($"{path}#{n++}", block));
            }
        }
        if (docs.Count == 0 || docs.All(d => string.IsNullOrWhiteSpace(d.Text)))
            throw new ChatForgeException($"empty corpus: no text in {string.Join(", ", paths)}");
        return docs;
    }

    /// <summary>Cuts text at blank lines (else newlines) into blocks of at least <paramref name="size"/> characters.</summary>
    public static IEnumerable<string> Blocks(string text, int size)
    {
        int start = 0;
        while (start < text.Length)
        {
            int end = Math.Min(text.Length, start + size);
            if (end < text.Length)
            {
                int cut = text.IndexOf("\n\n", end, StringComparison.Ordinal);
                if (cut < 0 || cut - end > size) cut = text.IndexOf('\n', end);
                end = cut < 0 ? text.Length : cut + 1;
            }
            var block = text[start..end].Trim('\n');
            if (block.Length > 0) yield return block;
            start = end;
        }
    }

    public static (List<Document> Train, List<Document> Val) Split(IReadOnlyList<Document> docs, double valFraction, long seed)
    {
        if (valFraction is <= 0 or >= 1) throw new ChatForgeException($"val_fraction must be in (0, 1), got {valFraction}");
        if (docs.Count < 2) throw new ChatForgeException("need at least two documents (or a longer text) to hold some out for validation");
        return HashSplit.Split(docs, d => d.Text, valFraction, seed);
    }
}
