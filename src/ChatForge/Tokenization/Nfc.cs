using System.Text;

namespace ChatForge.Tokenization;

/// <summary>
/// Unicode NFC (UAX #15: canonical decomposition, canonical ordering, canonical composition), with the tables of
/// <see cref="NfcTables"/>. ChatForge builds with InvariantGlobalization, under which .NET's string.Normalize leaves
/// non-ASCII text as it is, so Qwen2's NFC normalizer needs its own.
/// </summary>
public static class Nfc
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    static readonly Dictionary<int, int> Ccc = BuildCcc();
    static readonly Dictionary<int, int[]> Decomp = BuildDecomp();
    static readonly Dictionary<long, int> Comp = BuildComp();

    public static string Normalize(string s)
    {
        // Below U+0300 every string is already NFC (nothing there decomposes differently or combines).
        int k = 0;
        while (k < s.Length && s[k] < '\u0300') k++;
        if (k == s.Length) return s;

        var cps = new List<int>(s.Length + 8);
        for (int i = 0; i < s.Length; i++)
        {
            int cp = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[++i]) : s[i];
            Decompose(cp, cps);
        }
        // Canonical ordering: a stable sort of each run of non-starters by combining class.
        for (int i = 0; i < cps.Count; i++)
        {
            if (Class(cps[i]) == 0) continue;
            int j = i;
            while (j < cps.Count && Class(cps[j]) != 0) j++;
            if (j - i > 1)
            {
                var run = cps.GetRange(i, j - i).OrderBy(Class).ToList(); // OrderBy is stable
                for (int x = 0; x < run.Count; x++) cps[i + x] = run[x];
            }
            i = j;
        }
        // Canonical composition.
        int starterPos = 0, lastClass = Class(cps[0]) == 0 ? 0 : 256, outPos = 1;
        for (int i = 1; i < cps.Count; i++)
        {
            int ch = cps[i], chClass = Class(ch);
            if ((lastClass < chClass || lastClass == 0) && Compose(cps[starterPos], ch) is int composite)
            {
                cps[starterPos] = composite;
                continue;
            }
            if (chClass == 0) starterPos = outPos;
            lastClass = chClass;
            cps[outPos++] = ch;
        }
        var sb = new StringBuilder(outPos);
        for (int i = 0; i < outPos; i++)
        {
            if (cps[i] is >= 0xD800 and <= 0xDFFF) sb.Append((char)cps[i]); // a lone surrogate stays as it was
            else sb.Append(char.ConvertFromUtf32(cps[i]));
        }
        return sb.ToString();
    }

    static int Class(int cp) => cp < 0x300 ? 0 : Ccc.GetValueOrDefault(cp);

    static void Decompose(int cp, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
        }
        else if (cp >= 0xC0 && Decomp.TryGetValue(cp, out var d)) output.AddRange(d);
        else output.Add(cp);
    }

    static int? Compose(int a, int b)
    {
        if (a is >= LBase and < LBase + LCount && b is >= VBase and < VBase + VCount)
            return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
        if (a is >= SBase and < SBase + SCount && (a - SBase) % TCount == 0 && b is > TBase and < TBase + TCount)
            return a + (b - TBase);
        return Comp.TryGetValue(((long)a << 21) | (uint)b, out var c) ? c : null;
    }

    static Dictionary<int, int> BuildCcc()
    {
        var t = NfcTables.CombiningClasses;
        var d = new Dictionary<int, int>();
        for (int i = 0; i < t.Length; i += 3)
            for (int cp = t[i]; cp <= t[i + 1]; cp++) d[cp] = t[i + 2];
        return d;
    }

    static Dictionary<int, int[]> BuildDecomp()
    {
        var t = NfcTables.Decompositions;
        var d = new Dictionary<int, int[]>();
        for (int i = 0; i < t.Length; i += 2 + t[i + 1]) d[t[i]] = t.AsSpan(i + 2, t[i + 1]).ToArray();
        return d;
    }

    static Dictionary<long, int> BuildComp()
    {
        var t = NfcTables.Compositions;
        var d = new Dictionary<long, int>();
        for (int i = 0; i < t.Length; i += 3) d[((long)t[i] << 21) | (uint)t[i + 1]] = t[i + 2];
        return d;
    }
}
