using System.Text;
using System.Text.RegularExpressions;

namespace ChatForge.Tokenization;

/// <summary>
/// Trains a byte-level BPE (GPT-2's recipe): pre-tokenize with GPT-2's pattern, start from the 256
/// bytes, repeatedly merge the most frequent adjacent pair. Writes Hugging Face's vocab.json and
/// merges.txt, which <see cref="BpeFileTokenizer"/> (Microsoft.ML.Tokenizers) loads back.
/// Pair counts are updated incrementally (only the words that contain the merged pair are touched),
/// with a lazily-invalidated max-heap, so training on the demo corpora takes seconds.
/// </summary>
public static class BpeTrainer
{
    public static BpeFileTokenizer Train(IEnumerable<string> texts, int vocabSize, string outDir, Action<int, int>? progress = null)
    {
        int specials = SpecialTokens.All.Count;
        if (vocabSize < 256 + specials + 1)
            throw new ChatForgeException($"vocab_size {vocabSize} is too small for a byte-level BPE (at least {256 + specials + 1})");
        int targetMerges = vocabSize - 256 - specials;

        // 1. Word frequencies.
        var regex = new Regex(ByteLevel.Gpt2Pattern, RegexOptions.Compiled);
        var freq = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var (piece, special) in SpecialTokens.SplitSpecials(text, SpecialTokens.All.ToDictionary(s => s, _ => 0)))
            {
                if (special is not null) continue;
                for (var m = regex.Match(piece); m.Success; m = m.NextMatch())
                    freq[m.Value] = freq.GetValueOrDefault(m.Value) + 1;
            }
        if (freq.Count == 0) throw new ChatForgeException("cannot train a BPE tokenizer on an empty corpus");

        var words = new List<int>[freq.Count];
        var counts = new long[freq.Count];
        int w0 = 0;
        foreach (var (word, c) in freq.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            words[w0] = Encoding.UTF8.GetBytes(word).Select(b => (int)b).ToList();
            counts[w0++] = c;
        }

        // 2. Initial pair statistics.
        var pairCount = new Dictionary<long, long>();
        var pairWords = new Dictionary<long, HashSet<int>>();
        for (int w = 0; w < words.Length; w++)
            for (int i = 0; i + 1 < words[w].Count; i++)
            {
                long p = Key(words[w][i], words[w][i + 1]);
                pairCount[p] = pairCount.GetValueOrDefault(p) + counts[w];
                if (!pairWords.TryGetValue(p, out var set)) pairWords[p] = set = new HashSet<int>();
                set.Add(w);
            }
        // Max-heap by count; ties broken by the smaller pair key, so training is deterministic.
        var heap = new PriorityQueue<long, (long, long)>(Comparer<(long, long)>.Create((x, y) =>
            x.Item1 != y.Item1 ? y.Item1.CompareTo(x.Item1) : x.Item2.CompareTo(y.Item2)));
        foreach (var (p, c) in pairCount) heap.Enqueue(p, (c, p));

        // 3. Merge loop.
        var symbols = new List<byte[]>();
        for (int b = 0; b < 256; b++) symbols.Add(new[] { (byte)b });
        var merges = new List<(int, int)>();
        var delta = new Dictionary<long, long>();
        while (merges.Count < targetMerges && heap.TryDequeue(out var pair, out var prio))
        {
            if (!pairCount.TryGetValue(pair, out var current) || current != prio.Item1) continue; // stale entry
            if (current < 2) break; // nothing left worth merging
            int a = (int)(pair >> 32), b = (int)(pair & 0xffffffff);
            int c = symbols.Count;
            symbols.Add(symbols[a].Concat(symbols[b]).ToArray());
            merges.Add((a, b));
            delta.Clear();
            foreach (var w in pairWords[pair])
            {
                var s = words[w];
                bool found = false;
                for (int i = 0; i + 1 < s.Count; i++) if (s[i] == a && s[i + 1] == b) { found = true; break; }
                if (!found) continue;
                for (int i = 0; i + 1 < s.Count; i++) delta[Key(s[i], s[i + 1])] = delta.GetValueOrDefault(Key(s[i], s[i + 1])) - counts[w];
                var merged = new List<int>(s.Count);
                for (int i = 0; i < s.Count; i++)
                {
                    if (i + 1 < s.Count && s[i] == a && s[i + 1] == b) { merged.Add(c); i++; }
                    else merged.Add(s[i]);
                }
                words[w] = merged;
                for (int i = 0; i + 1 < merged.Count; i++)
                {
                    long k = Key(merged[i], merged[i + 1]);
                    delta[k] = delta.GetValueOrDefault(k) + counts[w];
                    if (!pairWords.TryGetValue(k, out var set)) pairWords[k] = set = new HashSet<int>();
                    set.Add(w);
                }
            }
            foreach (var (k, d) in delta)
            {
                if (d == 0) continue;
                long n = pairCount.GetValueOrDefault(k) + d;
                if (n <= 0) { pairCount.Remove(k); continue; }
                pairCount[k] = n;
                heap.Enqueue(k, (n, k));
            }
            pairCount.Remove(pair);
            pairWords.Remove(pair);
            progress?.Invoke(merges.Count, targetMerges);
        }

        // 4. Files: ids 0..255 are the bytes, then the merges in order, then the special tokens.
        var vocab = new Dictionary<string, int>();
        for (int id = 0; id < symbols.Count; id++) vocab[ByteLevel.Encode(symbols[id])] = id;
        var specialIds = new Dictionary<string, int>();
        foreach (var s in SpecialTokens.All) { specialIds[s] = symbols.Count + specialIds.Count; vocab[s] = specialIds[s]; }
        Directory.CreateDirectory(outDir);
        TokenizerFiles.WriteVocabAndMerges(outDir, vocab,
            merges.Select(m => (ByteLevel.Encode(symbols[m.Item1]), ByteLevel.Encode(symbols[m.Item2]))));
        var tok = new BpeFileTokenizer(Path.Combine(outDir, TokenizerFiles.Vocab), Path.Combine(outDir, TokenizerFiles.Merges), specialIds);
        TokenizerFiles.WriteManifest(outDir, tok);
        return tok;
    }

    static long Key(int a, int b) => ((long)a << 32) | (uint)b;
}
