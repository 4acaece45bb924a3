using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Tokenization;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// A prompt with K responses ranked by a labeler. <see cref="Ranks"/>[i] is the rank of response i
/// (1 = best; equal ranks are ties). <see cref="Chat"/>: the prompt is a conversation ending in a user message (TRL's
/// conversational format, its earlier turns in the prompt's history), else plain text that the response continues. <see cref="OracleScores"/>:
/// the noiseless oracle's scores, when known (kept for evaluation). <see cref="Family"/>: the alignment criterion the
/// prompt tests ("helpful", "honest", "harmless"), when known, for per-family accuracies.
/// </summary>
public sealed record Ranking(ChatPrompt Prompt, bool Chat, IReadOnlyList<string> Responses, IReadOnlyList<int> Ranks, IReadOnlyList<double>? OracleScores = null,
                             string? Family = null);

/// <summary>TRL's preference pair.</summary>
public sealed record PreferencePair(ChatPrompt Prompt, bool Chat, string Chosen, string Rejected);

public static class Preferences
{
    public const int MinK = 2, MaxK = 9;

    /// <summary>All pairs (i, j) of a ranking with i ranked strictly better than j.</summary>
    public static IEnumerable<PreferencePair> ToPairs(Ranking r)
    {
        for (int i = 0; i < r.Responses.Count; i++)
            for (int j = 0; j < r.Responses.Count; j++)
                if (r.Ranks[i] < r.Ranks[j]) yield return new PreferencePair(r.Prompt, r.Chat, r.Responses[i], r.Responses[j]);
    }

    static JsonNode PromptNode(ChatPrompt prompt, bool chat) =>
        chat ? new JsonArray(prompt.Messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray())
             : JsonValue.Create(prompt.Text)!;
    static JsonNode ResponseNode(string response, bool chat) =>
        chat ? new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = response }) : JsonValue.Create(response)!;

    static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void WriteRankings(string path, IEnumerable<Ranking> rankings) =>
        AtomicFile.WriteAllText(path, string.Concat(rankings.Select(r =>
        {
            var o = new JsonObject
            {
                ["prompt"] = PromptNode(r.Prompt, r.Chat),
                ["responses"] = new JsonArray(r.Responses.Select(x => ResponseNode(x, r.Chat)).ToArray()),
                ["ranking"] = new JsonArray(r.Ranks.Select(x => (JsonNode)x).ToArray()),
            };
            if (r.OracleScores is { } s) o["oracle_scores"] = new JsonArray(s.Select(x => (JsonNode)Math.Round(x, 6)).ToArray());
            if (r.Family is { } f) o["family"] = f;
            return o.ToJsonString(Compact) + "\n";
        })));

    public static void WritePairs(string path, IEnumerable<PreferencePair> pairs) =>
        AtomicFile.WriteAllText(path, string.Concat(pairs.Select(p => new JsonObject
        {
            ["prompt"] = PromptNode(p.Prompt, p.Chat),
            ["chosen"] = ResponseNode(p.Chosen, p.Chat),
            ["rejected"] = ResponseNode(p.Rejected, p.Chat),
        }.ToJsonString(Compact) + "\n")));

    /// <summary>
    /// A prompt: a string (standard), or a list of messages ending in the user's (conversational): the earlier ones,
    /// system, user and assistant turns, are its history.
    /// </summary>
    public static (ChatPrompt Prompt, bool Chat) ReadPrompt(JsonElement e, string where)
    {
        if (e.ValueKind == JsonValueKind.String) return (e.GetString()!, false);
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() == 0)
            throw new ChatForgeException($"{where}: 'prompt' must be a string or a list of messages");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var m in e.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new ChatForgeException($"{where}: 'prompt[{i}]' must be a message {{\"role\": …, \"content\": \"…\"}}");
            if (!ChatTemplate.Roles.Contains(role.GetString()))
                throw new ChatForgeException($"{where}: 'prompt[{i}].role' = {role.GetString()} (system, user, assistant)");
            messages.Add(new ChatMessage(role.GetString()!, content.GetString()!));
            i++;
        }
        if (messages[^1].Role != "user") throw new ChatForgeException($"{where}: 'prompt' must end with a user message (its last is '{messages[^1].Role}')");
        return (new ChatPrompt(messages[^1].Content, messages.Take(messages.Count - 1).ToList()), true);
    }

    static string ReadResponse(JsonElement e, string where, string key)
    {
        if (e.ValueKind == JsonValueKind.String) return e.GetString()!;
        if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() >= 1 && e[0].TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String)
            return c.GetString()!;
        throw new ChatForgeException($"{where}: '{key}' must be a string or a list with one assistant message");
    }

    /// <summary>Reads rankings ({"prompt","responses","ranking"}) or pairs ({"prompt","chosen","rejected"}, read as 2-response rankings).</summary>
    public static List<Ranking> ReadRankings(string path)
    {
        var list = new List<Ranking>();
        foreach (var (line, row) in Jsonl.Read(path))
        {
            string where = $"{path}:{line}";
            if (!row.TryGetProperty("prompt", out var p)) throw new ChatForgeException($"{where}: missing field 'prompt'");
            var (prompt, chat) = ReadPrompt(p, where);
            if (row.TryGetProperty("chosen", out var ch))
            {
                if (!row.TryGetProperty("rejected", out var rj)) throw new ChatForgeException($"{where}: missing field 'rejected'");
                list.Add(new Ranking(prompt, chat, new[] { ReadResponse(ch, where, "chosen"), ReadResponse(rj, where, "rejected") }, new[] { 1, 2 }));
                continue;
            }
            if (!row.TryGetProperty("responses", out var rs) || rs.ValueKind != JsonValueKind.Array) throw new ChatForgeException($"{where}: missing field 'responses' (or 'chosen'/'rejected')");
            if (!row.TryGetProperty("ranking", out var rk) || rk.ValueKind != JsonValueKind.Array) throw new ChatForgeException($"{where}: missing field 'ranking'");
            var responses = rs.EnumerateArray().Select(x => ReadResponse(x, where, "responses")).ToList();
            if (responses.Count is < MinK or > MaxK) throw new ChatForgeException($"{where}: {responses.Count} responses; a ranking has {MinK} to {MaxK}");
            var ranks = new List<int>();
            foreach (var x in rk.EnumerateArray())
            {
                if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out var v) || v < 1) throw new ChatForgeException($"{where}: 'ranking' entries must be ranks 1, 2, … (1 = best)");
                ranks.Add(v);
            }
            if (ranks.Count != responses.Count) throw new ChatForgeException($"{where}: 'ranking' has {ranks.Count} entries for {responses.Count} responses");
            if (ranks.Distinct().Count() == 1) throw new ChatForgeException($"{where}: every response has the same rank; nothing to learn");
            List<double>? oracle = null;
            if (row.TryGetProperty("oracle_scores", out var os) && os.ValueKind == JsonValueKind.Array)
                oracle = os.EnumerateArray().Select(x => x.GetDouble()).ToList();
            string? family = null;
            if (row.TryGetProperty("family", out var fam))
                family = fam.ValueKind == JsonValueKind.String ? fam.GetString() : throw new ChatForgeException($"{where}: 'family' must be a string");
            list.Add(new Ranking(prompt, chat, responses, ranks, oracle, family));
        }
        if (list.Count == 0) throw new ChatForgeException($"{path}: no rankings");
        return list;
    }

    /// <summary>Prompt + response as model input: plain concatenation, or the chat template (the prompt's turns, the assistant's).</summary>
    public static (int[] Ids, int ResponseStart) Encode(ITokenizer tok, ChatPrompt prompt, bool chat, string response, int maxLen)
    {
        var p = ChatTemplate.EncodePrompt(tok, prompt, chat);
        var r = tok.Encode(response).Append(chat ? tok.EndOfTurnId() : tok.EosId()).ToArray();
        if (r.Length >= maxLen) r = r[..(maxLen - 1)];               // the response is cut on the right only when it alone does not fit
        if (p.Length + r.Length > maxLen) p = p[^(maxLen - r.Length)..]; // the prompt from the left
        return (p.Concat(r).ToArray(), p.Length);
    }
}
