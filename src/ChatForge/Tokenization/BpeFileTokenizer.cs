using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace ChatForge.Tokenization;

/// <summary>
/// A byte-level BPE in Hugging Face's GPT-2 file layout (vocab.json + merges.txt), loaded with
/// Microsoft.ML.Tokenizers' BpeTokenizer: what <see cref="BpeTrainer"/> writes, and also a real
/// Hugging Face GPT-2 tokenizer directory.
/// </summary>
public sealed class BpeFileTokenizer : ITokenizer
{
    readonly BpeTokenizer _tok;
    readonly Dictionary<string, int> _specials;
    readonly int _vocabSize;
    readonly byte[]?[] _bytes;
    readonly string _vocabPath, _mergesPath;

    public BpeFileTokenizer(string vocabPath, string mergesPath, IReadOnlyDictionary<string, int> specials)
    {
        _vocabPath = vocabPath; _mergesPath = mergesPath;
        _specials = new Dictionary<string, int>(specials);
        try
        {
            _tok = BpeTokenizer.Create(new BpeOptions(vocabPath, mergesPath)
            {
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(new Regex(ByteLevel.Gpt2Pattern, RegexOptions.Compiled), _specials),
                SpecialTokens = _specials,
            });
        }
        catch (Exception e) when (e is not ChatForgeException)
        {
            throw new ChatForgeException($"{vocabPath} / {mergesPath}: not a loadable BPE vocabulary: {e.Message}", e);
        }
        _bytes = new byte[Math.Max(_tok.Vocabulary.Values.DefaultIfEmpty(-1).Max(), _specials.Values.DefaultIfEmpty(-1).Max()) + 1][];
        foreach (var (token, id) in _tok.Vocabulary)
            if (!_specials.ContainsKey(token))
                _bytes[id] = token.Select(c => ByteLevel.CharToByte.TryGetValue(c, out var b) ? b
                    : throw new ChatForgeException($"{vocabPath}: token '{token}' is not in GPT-2's byte-level alphabet")).ToArray();
        _vocabSize = Math.Max(_tok.Vocabulary.Values.DefaultIfEmpty(-1).Max(), _specials.Values.DefaultIfEmpty(-1).Max()) + 1;
    }

    public string Kind => "bpe";
    public int VocabSize => _vocabSize;
    public IReadOnlyDictionary<string, int> Specials => _specials;
    public int[] Encode(string text) => _tok.EncodeToIds(text).ToArray();

    public string Decode(IEnumerable<int> ids)
    {
        var list = ids as IReadOnlyList<int> ?? ids.ToList();
        foreach (var id in list)
            if (id < 0 || id >= _vocabSize) throw new ChatForgeException($"token id {id} is outside the BPE vocabulary (0..{_vocabSize - 1})");
        return _tok.Decode(list, considerSpecialTokens: true);
    }

    public ReadOnlySpan<byte> TokenBytes(int id) => id >= 0 && id < _bytes.Length && _bytes[id] is { } b ? b : ReadOnlySpan<byte>.Empty;

    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        var v = Path.Combine(dir, TokenizerFiles.Vocab);
        var m = Path.Combine(dir, TokenizerFiles.Merges);
        if (Path.GetFullPath(v) != Path.GetFullPath(_vocabPath)) Util.AtomicFile.WriteAllBytes(v, File.ReadAllBytes(_vocabPath));
        if (Path.GetFullPath(m) != Path.GetFullPath(_mergesPath)) Util.AtomicFile.WriteAllBytes(m, File.ReadAllBytes(_mergesPath));
        TokenizerFiles.WriteManifest(dir, this);
    }
}
