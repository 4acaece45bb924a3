using System.Text;

namespace ChatForge.Tokenization;

/// <summary>Ids 0–255 are the UTF-8 bytes of the text; the special tokens follow (256, 257, …).</summary>
public sealed class ByteTokenizer : ITokenizer
{
    readonly Dictionary<string, int> _specials;
    readonly Dictionary<int, string> _specialById;

    public ByteTokenizer()
    {
        _specials = SpecialTokens.All.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => 256 + p.i);
        _specialById = _specials.ToDictionary(p => p.Value, p => p.Key);
    }

    public string Kind => "byte";
    public int VocabSize => 256 + _specials.Count;
    public IReadOnlyDictionary<string, int> Specials => _specials;

    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length + 8);
        foreach (var (piece, special) in SpecialTokens.SplitSpecials(text, _specials))
        {
            if (special is { } id) { ids.Add(id); continue; }
            foreach (var b in Encoding.UTF8.GetBytes(piece)) ids.Add(b);
        }
        return ids.ToArray();
    }

    public string Decode(IEnumerable<int> ids)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        void Flush() { if (bytes.Count > 0) { sb.Append(Encoding.UTF8.GetString(bytes.ToArray())); bytes.Clear(); } }
        foreach (var id in ids)
        {
            if (id is >= 0 and < 256) bytes.Add((byte)id);
            else if (_specialById.TryGetValue(id, out var s)) { Flush(); sb.Append(s); }
            else throw new ChatForgeException($"token id {id} is outside the byte tokenizer's vocabulary (0..{VocabSize - 1})");
        }
        Flush();
        return sb.ToString();
    }

    static readonly byte[][] Single = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToArray();
    public ReadOnlySpan<byte> TokenBytes(int id) => id is >= 0 and < 256 ? Single[id] : ReadOnlySpan<byte>.Empty;

    public void Save(string dir) => TokenizerFiles.WriteManifest(dir, this);
}
