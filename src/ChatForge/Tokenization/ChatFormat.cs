using System.Text;
using System.Text.RegularExpressions;

namespace ChatForge.Tokenization;

/// <summary>The conversation layouts ChatForge can render without a Jinja engine.</summary>
public enum ChatFormatKind
{
    /// <summary>No chat template: the tokenizer encodes text, not conversations.</summary>
    None,
    /// <summary>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n (ChatForge's own, Qwen2/2.5, SmolLM2).</summary>
    ChatMl,
    /// <summary>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent.strip()&lt;|eot_id|&gt; (Llama 3, 3.1, 3.2).</summary>
    Llama3,
}

/// <summary>
/// A chat layout: its <see cref="Kind"/>, the special token that closes a turn (<see cref="EndOfTurn"/>: trained on after
/// assistant content, and the stop token of chat generation), the system message the template inserts when a conversation
/// has none (<see cref="DefaultSystem"/>, ChatML), the token the template opens with (<see cref="Bos"/>, Llama 3), and the
/// "Today Date" of the system header Llama 3.1/3.2 always write (<see cref="DateString"/>; null for Llama 3.0's template).
/// </summary>
public sealed record ChatFormat(ChatFormatKind Kind, string EndOfTurn, string? DefaultSystem = null, string? Bos = null, string? DateString = null)
{
    /// <summary>ChatML without a default system message: ChatForge's own tokenizers.</summary>
    public static readonly ChatFormat ChatMl = new(ChatFormatKind.ChatMl, SpecialTokens.ImEnd);

    /// <summary>No chat template.</summary>
    public static readonly ChatFormat None = new(ChatFormatKind.None, "");

    public const string StartHeader = "<|start_header_id|>";
    public const string EndHeader = "<|end_header_id|>";
    public const string EotId = "<|eot_id|>";

    /// <summary>Llama 3.1/3.2's templates fall back to this date when transformers offers no strftime_now; ChatForge always
    /// uses it, so that an encoding does not change with the calendar.</summary>
    public const string LlamaDefaultDate = "26 Jul 2024";

    /// <summary>The special tokens the layout writes (each must be a special token of the tokenizer).</summary>
    public IEnumerable<string> Specials => Kind switch
    {
        ChatFormatKind.ChatMl => new[] { SpecialTokens.ImStart, SpecialTokens.ImEnd },
        ChatFormatKind.Llama3 => new[] { StartHeader, EndHeader, EotId }.Concat(Bos is null ? Array.Empty<string>() : new[] { Bos }),
        _ => Array.Empty<string>(),
    };

    const string Nl = @"(?:\\n|\n)";
    const string Role = @"message(?:\[\s*'role'\s*\]|\[\s*""role""\s*\]|\.role)";
    const string Content = @"message(?:\[\s*'content'\s*\]|\[\s*""content""\s*\]|\.content)";
    static readonly Regex ChatMlTurn = new(@"'<\|im_start\|>'\s*\+\s*" + Role + @"\s*\+\s*'" + Nl + @"'\s*\+\s*" + Content + @"\s*\+\s*'<\|im_end\|>'");
    static readonly Regex ChatMlDefaultSystem = new(@"'<\|im_start\|>system" + Nl + @"((?:[^'\\]|\\.)*)<\|im_end\|>" + Nl + "'");
    static readonly Regex Llama3Turn = new(@"'<\|start_header_id\|>'\s*\+\s*" + Role + @"\s*\+\s*'<\|end_header_id\|>" + Nl + Nl + @"'\s*\+\s*" + Content + @"\s*\|\s*trim\s*\+\s*'<\|eot_id\|>'");
    static readonly Regex TrimmedContent = new(Content + @"\s*\|\s*trim");
    static readonly Regex DateDefault = new(@"set\s+date_string\s*=\s*""([^""]*)""");

    /// <summary>
    /// Recognises a Hugging Face chat_template (Jinja source) as one of the built-in layouts. <paramref name="source"/> names
    /// where the template came from (for errors); <paramref name="bosToken"/> is tokenizer_config.json's bos_token.
    /// A template that is none of them is a one-line error naming the key.
    /// </summary>
    public static ChatFormat FromTemplate(string? template, string? bosToken, string source)
    {
        if (template is null) return None;
        if (ChatMlTurn.IsMatch(template))
        {
            if (TrimmedContent.IsMatch(template))
                throw Unrecognised(source, "a ChatML template that trims the content");
            var m = ChatMlDefaultSystem.Match(template);
            return m.Success ? ChatMl with { DefaultSystem = UnescapeJinja(m.Groups[1].Value) } : ChatMl;
        }
        if (Llama3Turn.IsMatch(template))
        {
            string? bos = null;
            if (template.Contains("bos_token", StringComparison.Ordinal))
                bos = bosToken ?? throw new ChatForgeException($"{source}: the Llama 3 chat_template writes bos_token, but 'bos_token' is missing");
            string? date = null;
            if (template.Contains("Cutting Knowledge Date: December 2023", StringComparison.Ordinal))
            {
                if (!template.Contains("\"Today Date: \" + date_string", StringComparison.Ordinal))
                    throw Unrecognised(source, "a Llama 3.1-style system header without 'Today Date: ' + date_string");
                var d = DateDefault.Match(template);
                date = d.Success ? d.Groups[1].Value : LlamaDefaultDate;
            }
            return new ChatFormat(ChatFormatKind.Llama3, EotId, Bos: bos, DateString: date);
        }
        throw Unrecognised(source, "not a layout ChatForge knows");
    }

    static ChatForgeException Unrecognised(string source, string what) => new(
        $"{source}: 'chat_template' is {what}; supported: ChatML (Qwen2/2.5, SmolLM2; a default system message is taken from the template) and Llama 3 / 3.1 / 3.2");

    /// <summary>The value of a single-quoted Jinja string literal's body.</summary>
    static string UnescapeJinja(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 == s.Length) { sb.Append(s[i]); continue; }
            char c = s[++i];
            sb.Append(c switch { 'n' => '\n', 't' => '\t', 'r' => '\r', _ => c });
        }
        return sb.ToString();
    }
}
