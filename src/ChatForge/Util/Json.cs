using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ChatForge.Util;

public static class Json
{
    /// <summary>snake_case keys; unknown keys are errors; comments and trailing commas allowed.</summary>
    public static readonly JsonSerializerOptions Strict = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Compact, for JSONL lines.</summary>
    public static readonly JsonSerializerOptions Line = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Strict);

    /// <summary>Reads a config-like JSON file; a malformed file or unknown key is a <see cref="ChatForgeException"/> naming file and key.</summary>
    public static T LoadFile<T>(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        return Parse<T>(File.ReadAllText(path), path);
    }

    public static T Parse<T>(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Strict) ?? throw new ChatForgeException($"{source}: empty JSON");
        }
        catch (JsonException e)
        {
            var where = e.Path is { Length: > 0 } p ? $" at '{p.TrimStart('$', '.')}'" : "";
            var line = e.LineNumber is { } l ? $" (line {l + 1})" : "";
            var what = e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown key" : "invalid value";
            throw new ChatForgeException($"{source}: {what}{where}{line}: {FirstSentence(e.Message)}", e);
        }
    }

    static string FirstSentence(string m)
    {
        var i = m.IndexOf(". ", StringComparison.Ordinal);
        return i > 0 ? m[..i] : m.TrimEnd('.');
    }
}
