namespace ChatForge.Tokenization;

/// <summary>
/// GPT-2's byte ⇄ printable-character table (bytes_to_unicode in OpenAI's encoder.py): printable
/// Latin-1 bytes map to themselves, the rest to U+0100 and up, so every byte sequence is a string
/// of visible characters (a space becomes 'Ġ'). vocab.json and merges.txt are written in it.
/// </summary>
public static class ByteLevel
{
    public static readonly char[] ByteToChar = Build();
    public static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    /// <summary>GPT-2's pre-tokenization pattern (contractions, letters, numbers, other, whitespace).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    static char[] Build()
    {
        var map = new char[256];
        var printable = new bool[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++)
            map[b] = printable[b] ? (char)b : (char)(256 + n++);
        return map;
    }

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }
}
