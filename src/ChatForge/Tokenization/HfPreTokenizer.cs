using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace ChatForge.Tokenization;

/// <summary>
/// A .NET regex matched over code points, as Rust's engines (onig, fancy-regex) match Hugging Face's patterns. .NET's
/// classes see UTF-16 units, so an astral letter (a surrogate pair) would be neither \p{L} nor \p{N} to it and
/// "[^\r\n\p{L}\p{N}]?" could take half an emoji. Text with surrogate pairs is matched in a shadow string where each pair
/// is one BMP stand-in of the same class (a letter, a number, or a private-use "other"), and the matches mapped back.
/// </summary>
public sealed class CodePointRegex
{
    readonly Regex _regex;

    public CodePointRegex(string pattern) =>
        _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);

    /// <summary>The (start, length) of each match in <paramref name="text"/>, left to right.</summary>
    public IEnumerable<(int Start, int Length)> Matches(string text)
    {
        if (!text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            for (var m = _regex.Match(text); m.Success; m = m.NextMatch()) yield return (m.Index, m.Length);
            yield break;
        }
        var shadow = new StringBuilder(text.Length);
        var origin = new List<int>(text.Length + 1); // shadow index → text index
        for (int i = 0; i < text.Length; i++)
        {
            origin.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                shadow.Append(StandIn(char.ConvertToUtf32(text[i], text[i + 1])));
                i++;
            }
            else shadow.Append(text[i]);
        }
        origin.Add(text.Length);
        for (var m = _regex.Match(shadow.ToString()); m.Success; m = m.NextMatch())
            yield return (origin[m.Index], origin[m.Index + m.Length] - origin[m.Index]);
    }

    static char StandIn(int codePoint) => CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => '\u00AA', // ª: a letter without case
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => '\u00B2', // ²
        _ => '\uE000', // private use: not a letter, number or space
    };
}

/// <summary>
/// One step of a Hugging Face pre-tokenizer: splits each (start, length) piece of the text into smaller pieces.
/// A Sequence applies its steps in turn to every piece the previous step left.
/// </summary>
public abstract class PreTokenizerStep
{
    public abstract void Split(string text, int start, int length, List<(int Start, int Length)> output);

    /// <summary>Split with behavior "Isolated": every match and every stretch between matches is a piece.</summary>
    public sealed class RegexIsolated(CodePointRegex regex) : PreTokenizerStep
    {
        public override void Split(string text, int start, int length, List<(int Start, int Length)> output)
        {
            int pos = 0;
            foreach (var (s, l) in regex.Matches(text.Substring(start, length)))
            {
                if (l == 0) continue;
                if (s > pos) output.Add((start + pos, s - pos));
                output.Add((start + s, l));
                pos = s + l;
            }
            if (pos < length) output.Add((start + pos, length - pos));
        }
    }

    /// <summary>Digits: numeric code points (Unicode N*, Rust's char::is_numeric) each alone, or in runs.</summary>
    public sealed class Digits(bool individual) : PreTokenizerStep
    {
        public override void Split(string text, int start, int length, List<(int Start, int Length)> output)
        {
            int end = start + length, pieceStart = start, i = start;
            bool inRun = false;
            while (i < end)
            {
                int w = char.IsHighSurrogate(text[i]) && i + 1 < end && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
                bool numeric = IsNumeric(w == 2 ? char.ConvertToUtf32(text[i], text[i + 1]) : text[i]);
                if (numeric && (individual || !inRun))
                {
                    if (i > pieceStart) output.Add((pieceStart, i - pieceStart));
                    pieceStart = i;
                }
                else if (!numeric && inRun)
                {
                    output.Add((pieceStart, i - pieceStart));
                    pieceStart = i;
                }
                inRun = numeric;
                i += w;
                if (numeric && individual) { output.Add((pieceStart, i - pieceStart)); pieceStart = i; inRun = false; }
            }
            if (end > pieceStart) output.Add((pieceStart, end - pieceStart));
        }

        static bool IsNumeric(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp)
            is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
    }
}
