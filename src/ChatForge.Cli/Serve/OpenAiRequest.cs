using System.Text.Json;
using Microsoft.Extensions.AI;

namespace ChatForge.Cli.Serve;

/// <summary>A client's mistake: an OpenAI error body with this status, type, param and code.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error") : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;
}

/// <summary>
/// A parsed POST /v1/chat/completions body, checked field by field as OpenAI's API checks it: a wrong type or an
/// out-of-range value is an <see cref="ApiError"/> 400 naming the field (<c>param</c>). Fields this server does not use
/// (user, frequency_penalty, …) are ignored, as OpenAI-compatible servers do.
/// </summary>
public sealed record OpenAiRequest(string Model, List<ChatMessage> Messages, ChatOptions Options, bool Stream, bool IncludeUsage, bool Logprobs, int TopLogprobs)
{
    public const int MaxStops = 4;

    public static OpenAiRequest Parse(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new ApiError(400, "The request body must be a JSON object.");
        var model = body.TryGetProperty("model", out var m) ? m.ValueKind == JsonValueKind.String ? m.GetString()! : throw Type("model", "a string")
                                                            : throw new ApiError(400, "you must provide a model parameter", "model", "missing_required_parameter");
        var messages = ParseMessages(body);

        var o = new ChatOptions { ModelId = model };
        if (Number(body, "temperature") is { } t)
        {
            if (t is < 0 or > 2) throw Range("temperature", t, "between 0 and 2");
            o.Temperature = (float)t;
        }
        if (Number(body, "top_p") is { } p)
        {
            if (p is < 0 or > 1) throw Range("top_p", p, "between 0 and 1");
            o.TopP = (float)Math.Max(p, 1e-6);   // 0 keeps only the most likely token
        }
        if (Integer(body, "top_k") is { } k)
        {
            if (k < 0) throw Range("top_k", k, "at least 0");
            o.TopK = (int)k;
        }
        foreach (var key in new[] { "max_tokens", "max_completion_tokens" })
            if (Integer(body, key) is { } max)
            {
                if (max < 1) throw Range(key, max, "at least 1");
                o.MaxOutputTokens = (int)Math.Min(max, int.MaxValue);
            }
        if (Integer(body, "seed") is { } seed) o.Seed = seed;
        if (Integer(body, "n") is { } n && n != 1) throw new ApiError(400, $"Invalid value for 'n': {n}. This server generates one choice per request (n = 1).", "n", "invalid_value");
        if (body.TryGetProperty("stop", out var stop) && stop.ValueKind != JsonValueKind.Null)
        {
            var stops = stop.ValueKind switch
            {
                JsonValueKind.String => new List<string> { stop.GetString()! },
                JsonValueKind.Array => stop.EnumerateArray().Select((s, j) => s.ValueKind == JsonValueKind.String ? s.GetString()! : throw Type($"stop[{j}]", "a string")).ToList(),
                _ => throw Type("stop", "a string or an array of strings"),
            };
            if (stops.Count > MaxStops) throw new ApiError(400, $"'stop' holds {stops.Count} sequences; at most {MaxStops}.", "stop", "invalid_value");
            o.StopSequences = stops;
        }
        bool stream = Bool(body, "stream") ?? false;
        bool includeUsage = false;
        if (body.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object) throw Type("stream_options", "an object");
            if (!stream) throw new ApiError(400, "'stream_options' is only allowed with 'stream': true.", "stream_options", "invalid_value");
            includeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }
        bool logprobs = Bool(body, "logprobs") ?? false;
        int top = -1;
        if (Integer(body, "top_logprobs") is { } tl)
        {
            if (tl is < 0 or > 20) throw Range("top_logprobs", tl, "between 0 and 20");
            if (!logprobs) throw new ApiError(400, "'top_logprobs' needs 'logprobs': true.", "top_logprobs", "invalid_value");
            top = (int)tl;
        }
        if (logprobs) (o.AdditionalProperties ??= new())["top_logprobs"] = Math.Max(0, top);
        return new OpenAiRequest(model, messages, o, stream, includeUsage, logprobs, Math.Max(0, top));
    }

    /// <summary>The "messages" field: system (or developer), user and assistant messages with text content.</summary>
    public static List<ChatMessage> ParseMessages(JsonElement body)
    {
        if (!body.TryGetProperty("messages", out var msgs)) throw new ApiError(400, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
        if (msgs.ValueKind != JsonValueKind.Array) throw Type("messages", "an array");
        if (msgs.GetArrayLength() == 0) throw new ApiError(400, "'messages' must hold at least one message.", "messages", "invalid_value");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var e in msgs.EnumerateArray())
        {
            string at = $"messages[{i}]";
            if (e.ValueKind != JsonValueKind.Object) throw Type(at, "an object");
            if (!e.TryGetProperty("role", out var role)) throw new ApiError(400, $"Missing required parameter: '{at}.role'.", at + ".role", "missing_required_parameter");
            if (role.ValueKind != JsonValueKind.String) throw Type(at + ".role", "a string");
            var r = role.GetString() switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                var other => throw new ApiError(400, $"Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user' and 'assistant'.", at + ".role", "invalid_value"),
            };
            messages.Add(new ChatMessage(r, Content(e, at, r == ChatRole.Assistant)));
            i++;
        }
        if (!messages.Any(x => x.Role != ChatRole.System)) throw new ApiError(400, "'messages' must hold at least one user or assistant message.", "messages", "invalid_value");

        return messages;
    }

    /// <summary>A message's text: a string, or text parts ([{"type": "text", "text": …}]); null only for an assistant's.</summary>
    static string Content(JsonElement message, string at, bool assistant)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null)
            return assistant ? "" : throw new ApiError(400, $"Missing required parameter: '{at}.content'.", at + ".content", "missing_required_parameter");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw Type(at + ".content", "a string or an array of content parts");
        var text = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{j}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw Type(pat, "a content part with a 'type'");
            if (type.GetString() != "text") throw new ApiError(400, $"Content part type '{type.GetString()}' is not supported; this model reads text parts only.", pat + ".type", "invalid_value");
            if (!part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String) throw Type(pat + ".text", "a string");
            text.Append(t.GetString());
            j++;
        }
        return text.ToString();
    }

    static ApiError Type(string param, string expected) =>
        new(400, $"Invalid type for '{param}': expected {expected}.", param, "invalid_type");

    static ApiError Range(string param, double value, string range) =>
        new(400, $"Invalid '{param}': {value.ToString(System.Globalization.CultureInfo.InvariantCulture)}. Expected a value {range}.", param, "invalid_value");

    static double? Number(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Type(key, "a number");
    }

    static long? Integer(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var n)) return n;
        throw Type(key, "an integer");
    }

    static bool? Bool(JsonElement o, string key, string? param = null)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Type(param ?? key, "a boolean") };
    }
}
