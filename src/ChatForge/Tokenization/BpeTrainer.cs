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

        var pairs = new PairStatistics(WordFrequencies(texts));
        var symbols = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        var merges = new List<(int, int)>();
        while (merges.Count < targetMerges && pairs.MostFrequent() is var (a, b))
        {
            int merged = symbols.Count;
            symbols.Add(symbols[a].Concat(symbols[b]).ToArray());
            merges.Add((a, b));
            pairs.Merge(a, b, merged);
            progress?.Invoke(merges.Count, targetMerges);
        }
        return WriteFiles(outDir, symbols, merges);
    }

    /// <summary>How often each pre-token (GPT-2's pattern; special tokens skipped) occurs, in ordinal order of the pre-tokens.</summary>
    static List<(string Word, long Count)> WordFrequencies(IEnumerable<string> texts)
    {
        var regex = new Regex(ByteLevel.Gpt2Pattern, RegexOptions.Compiled);
        var specials = SpecialTokens.All.ToDictionary(s => s, _ => 0);
        var freq = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var (piece, special) in SpecialTokens.SplitSpecials(text, specials))
            {
                if (special is not null) continue;
                for (var m = regex.Match(piece); m.Success; m = m.NextMatch())
                    freq[m.Value] = freq.GetValueOrDefault(m.Value) + 1;
            }
        if (freq.Count == 0) throw new ChatForgeException("cannot train a BPE tokenizer on an empty corpus");
        return freq.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value)).ToList();
    }

    /// <summary>Ids 0..255 are the bytes, then the merges in order, then the special tokens.</summary>
    static BpeFileTokenizer WriteFiles(string outDir, List<byte[]> symbols, List<(int, int)> merges)
    {
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

    /// <summary>
    /// The words as symbol sequences with their counts, and the count of every adjacent symbol pair,
    /// kept up to date as pairs merge: only the words that contain the merged pair are touched.
    /// </summary>
    sealed class PairStatistics
    {
        readonly List<int>[] _words;
        readonly long[] _counts;
        readonly Dictionary<long, long> _pairCount = new();
        readonly Dictionary<long, HashSet<int>> _pairWords = new();
        // Max-heap by count, ties broken by the smaller pair key (deterministic training); entries whose
        // count has changed since they were queued are stale and skipped.
        readonly PriorityQueue<long, (long Count, long Key)> _heap = new(Comparer<(long Count, long Key)>.Create((x, y) =>
            x.Count != y.Count ? y.Count.CompareTo(x.Count) : x.Key.CompareTo(y.Key)));
        readonly Dictionary<long, long> _delta = new();

        public PairStatistics(List<(string Word, long Count)> words)
        {
            _words = words.Select(w => Encoding.UTF8.GetBytes(w.Word).Select(b => (int)b).ToList()).ToArray();
            _counts = words.Select(w => w.Count).ToArray();
            for (int w = 0; w < _words.Length; w++)
                for (int i = 0; i + 1 < _words[w].Count; i++)
                {
                    long p = Key(_words[w][i], _words[w][i + 1]);
                    _pairCount[p] = _pairCount.GetValueOrDefault(p) + _counts[w];
                    Occurs(p, w);
                }
            foreach (var (p, c) in _pairCount) _heap.Enqueue(p, (c, p));
        }

        /// <summary>The most frequent pair, or null when no pair occurs at least twice.</summary>
        public (int A, int B)? MostFrequent()
        {
            while (_heap.TryDequeue(out var pair, out var prio))
            {
                if (!_pairCount.TryGetValue(pair, out var current) || current != prio.Count) continue; // stale entry
                if (current < 2) return null; // nothing left worth merging
                return ((int)(pair >> 32), (int)(pair & 0xffffffff));
            }
            return null;
        }

        /// <summary>Replaces every (a, b) in every word by <paramref name="merged"/> and updates the pair counts.</summary>
        public void Merge(int a, int b, int merged)
        {
            long pair = Key(a, b);
            _delta.Clear();
            foreach (var w in _pairWords[pair])
            {
                var s = _words[w];
                if (!Contains(s, a, b)) continue;
                for (int i = 0; i + 1 < s.Count; i++) Add(Key(s[i], s[i + 1]), -_counts[w]);
                var next = new List<int>(s.Count);
                for (int i = 0; i < s.Count; i++)
                {
                    if (i + 1 < s.Count && s[i] == a && s[i + 1] == b) { next.Add(merged); i++; }
                    else next.Add(s[i]);
                }
                _words[w] = next;
                for (int i = 0; i + 1 < next.Count; i++)
                {
                    long k = Key(next[i], next[i + 1]);
                    Add(k, _counts[w]);
                    Occurs(k, w);
                }
            }
            foreach (var (k, d) in _delta)
            {
                if (d == 0) continue;
                long n = _pairCount.GetValueOrDefault(k) + d;
                if (n <= 0) { _pairCount.Remove(k); continue; }
                _pairCount[k] = n;
                _heap.Enqueue(k, (n, k));
            }
            _pairCount.Remove(pair);
            _pairWords.Remove(pair);
        }

        void Add(long pair, long d) => _delta[pair] = _delta.GetValueOrDefault(pair) + d;

        void Occurs(long pair, int word)
        {
            if (!_pairWords.TryGetValue(pair, out var set)) _pairWords[pair] = set = new HashSet<int>();
            set.Add(word);
        }

        static bool Contains(List<int> s, int a, int b)
        {
            for (int i = 0; i + 1 < s.Count; i++) if (s[i] == a && s[i + 1] == b) return true;
            return false;
        }
    }

    static long Key(int a, int b) => ((long)a << 32) | (uint)b;
}
