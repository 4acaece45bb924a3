using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Tokenization;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// One instruction-tuning record in TRL's field names: conversational ({"messages": [{role, content}]}),
/// prompt–completion ({"prompt", "completion"}, treated as one user turn and one assistant turn, so the
/// same chat template applies), or plain language modeling ({"text"}, trained on every token).
/// </summary>
public sealed record SftExample(IReadOnlyList<ChatMessage>? Messages, string? Text, string Source = "")
{
    public static SftExample Chat(params ChatMessage[] m) => new(m, null);
    public static SftExample PromptCompletion(string prompt, string completion, string source = "") =>
        new(new[] { new ChatMessage("user", prompt), new ChatMessage("assistant", completion) }, null, source);
}

/// <summary>An example as token ids, with the trained-on mask and how truncation treated it.</summary>
public sealed record EncodedExample(int[] Ids, bool[] Train, bool PromptTruncated, bool AnswerTruncated) : Segment(Ids, Train);

public static class SftData
{
    public static List<SftExample> Load(string path)
    {
        var list = new List<SftExample>();
        foreach (var (line, row) in Jsonl.Read(path))
        {
            string where = $"{path}:{line}";
            if (row.TryGetProperty("messages", out var msgs))
            {
                if (msgs.ValueKind != JsonValueKind.Array || msgs.GetArrayLength() == 0) throw new ChatForgeException($"{where}: 'messages' must be a non-empty array");
                var messages = new List<ChatMessage>();
                foreach (var m in msgs.EnumerateArray())
                {
                    if (m.ValueKind != JsonValueKind.Object) throw new ChatForgeException($"{where}: each message must be an object with 'role' and 'content'");
                    var role = m.String("role", path, line);
                    if (!ChatTemplate.Roles.Contains(role)) throw new ChatForgeException($"{where}: unknown role '{role}' (system, user, assistant)");
                    messages.Add(new ChatMessage(role, m.String("content", path, line)));
                }
                if (messages[^1].Role != "assistant") throw new ChatForgeException($"{where}: the last message must be the assistant's");
                list.Add(new SftExample(messages, null, where));
            }
            else if (row.TryGetProperty("prompt", out _) || row.TryGetProperty("completion", out _))
                list.Add(SftExample.PromptCompletion(row.String("prompt", path, line), row.String("completion", path, line), where));
            else if (row.TryGetProperty("text", out _))
                list.Add(new SftExample(null, row.String("text", path, line), where));
            else throw new ChatForgeException($"{where}: expected 'messages', 'prompt' and 'completion', or 'text'");
        }
        if (list.Count == 0) throw new ChatForgeException($"{path}: no examples");
        return list;
    }

    public static void Write(string path, IEnumerable<SftExample> examples)
    {
        var o = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var lines = examples.Select(e =>
        {
            JsonObject row = e.Messages is { } m
                ? (m.Count == 2 && m[0].Role == "user" && m[1].Role == "assistant"
                    ? new JsonObject { ["prompt"] = m[0].Content, ["completion"] = m[1].Content }
                    : new JsonObject { ["messages"] = new JsonArray(m.Select(x => (JsonNode)new JsonObject { ["role"] = x.Role, ["content"] = x.Content }).ToArray()) })
                : new JsonObject { ["text"] = e.Text };
            return row.ToJsonString(o);
        });
        AtomicFile.WriteAllText(path, string.Join('\n', lines) + "\n");
    }

    /// <summary>
    /// Tokenizes an example with the chat template (a {"text"} example as plain text, every token trained) and fits it into <paramref name="maxLen"/> tokens.
    /// The rule: tokens are dropped from the left (the prompt side, oldest turns first) until the
    /// sequence fits, but never from the final assistant answer; if that answer alone does not fit
    /// after its header, the answer is cut on the right, and the example is counted as answer-truncated.
    /// </summary>
    public static EncodedExample Encode(ITokenizer tok, SftExample ex, int maxLen)
    {
        if (ex.Messages is null)
        {
            var ids = tok.Encode(ex.Text!);     // a passage of ordinary text: no end-of-text marker after it
            bool cut = ids.Length > maxLen;
            if (cut) ids = ids[..maxLen];
            return new EncodedExample(ids, Enumerable.Repeat(true, ids.Length).ToArray(), false, cut);
        }
        var (all, train) = ChatTemplate.Encode(tok, ex.Messages, addGenerationPrompt: false);
        if (all.Length <= maxLen) return new EncodedExample(all, train, false, false);
        // Start of the final assistant message's content (its header stays with it).
        var lastAnswer = ChatTemplate.Encode(tok, new[] { ex.Messages[^1] }, false);
        int answerLen = lastAnswer.Ids.Length;                 // <|im_start|>assistant\n … <|im_end|>\n
        int answerStart = all.Length - answerLen;
        if (answerLen <= maxLen)
        {
            int drop = all.Length - maxLen;                    // ≤ answerStart
            return new EncodedExample(all[drop..], train[drop..], true, false);
        }
        // The answer alone is too long: keep its header and the start of its content.
        var ids2 = all[answerStart..(answerStart + maxLen)];
        var tr2 = train[answerStart..(answerStart + maxLen)];
        return new EncodedExample(ids2, tr2, answerStart > 0, true);
    }
}
