using System.Text;
using System.Text.Json;

namespace ChatForge.Data;

/// <summary>JSONL reading with errors that name the file and line.</summary>
public static class Jsonl
{
    static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>Yields (line number, parsed object) for every non-blank line.</summary>
    public static IEnumerable<(int Line, JsonElement Row)> Read(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        using var reader = new StreamReader(path, StrictUtf8, detectEncodingFromByteOrderMarks: true);
        int lineNo = 0;
        while (true)
        {
            string? line;
            try { line = reader.ReadLine(); }
            catch (DecoderFallbackException) { throw new ChatForgeException($"{path}:{lineNo + 1}: invalid UTF-8"); }
            if (line is null) yield break;
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement row;
            try
            {
                using var doc = JsonDocument.Parse(line);
                row = doc.RootElement.Clone();
            }
            catch (JsonException e) { throw new ChatForgeException($"{path}:{lineNo}: malformed JSON: {e.Message.Split(". ")[0]}"); }
            if (row.ValueKind != JsonValueKind.Object) throw new ChatForgeException($"{path}:{lineNo}: expected a JSON object");
            yield return (lineNo, row);
        }
    }

    /// <summary>A required string field of a row.</summary>
    public static string String(this JsonElement row, string key, string path, int line)
    {
        if (!row.TryGetProperty(key, out var v)) throw new ChatForgeException($"{path}:{line}: missing field '{key}'");
        if (v.ValueKind != JsonValueKind.String) throw new ChatForgeException($"{path}:{line}: field '{key}' must be a string");
        return v.GetString()!;
    }

    /// <summary>Reads a text file as strict UTF-8 (an error names the file on invalid bytes).</summary>
    public static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        try { return File.ReadAllText(path, StrictUtf8); }
        catch (DecoderFallbackException e) { throw new ChatForgeException($"{path}: invalid UTF-8 at byte {e.Index}"); }
    }
}
