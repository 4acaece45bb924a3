using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using ChatForge.Tokenization;
using ChatForge.Util;

namespace ChatForge.Data;

public sealed record StateCapital(string State, string Capital);
public sealed record LabeledWord(string Word, int Valence);
public sealed record Email(string Id, string Subject, string Body, bool Spam);

/// <summary>
/// The demo's instruction tasks, built from existing datasets the way practitioners turn NLP datasets
/// into instructions: several paraphrased templates per task, and held-out entities that never appear
/// in the instruction data (a fixed set of states for capitals, words for sentiment, messages for spam).
/// </summary>
public static partial class DemoTasks
{
    // ---- loading -------------------------------------------------------------------------------

    public static List<StateCapital> LoadCapitals(string csv)
    {
        var rows = File.ReadAllLines(csv).Skip(1).Where(l => l.Length > 0).Select((l, i) =>
        {
            var parts = l.Split(',');
            if (parts.Length != 2) throw new ChatForgeException($"{csv}:{i + 2}: expected 'state,capital'");
            return new StateCapital(parts[0].Trim(), parts[1].Trim());
        }).ToList();
        if (rows.Count == 0) throw new ChatForgeException($"{csv}: no states");
        return rows;
    }

    public static List<LabeledWord> LoadAfinn(string csv) =>
        File.ReadAllLines(csv).Skip(1).Where(l => l.Length > 0).Select((l, i) =>
        {
            int comma = l.LastIndexOf(',');
            if (comma <= 0 || !int.TryParse(l[(comma + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v))
                throw new ChatForgeException($"{csv}:{i + 2}: expected 'word,valence'");
            return new LabeledWord(l[..comma], v);
        }).ToList();

    public static HashSet<string> LoadWordList(string path) =>
        File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith(';')).ToHashSet(StringComparer.Ordinal);

    /// <summary>SpamAssassin messages: subject and the first readable lines of the body (HTML tags and quoted-printable soft breaks removed).</summary>
    public static List<Email> LoadSpam(string jsonl) =>
        Jsonl.Read(jsonl).Select(r =>
        {
            var raw = r.Row.String("text", jsonl, r.Line).Replace("\r\n", "\n", StringComparison.Ordinal);
            int split = raw.IndexOf("\n\n", StringComparison.Ordinal);
            var headers = split < 0 ? raw : raw[..split];
            var body = split < 0 ? "" : raw[(split + 2)..];
            var subject = Regex.Match(headers, @"^Subject:\s*(.*)$", RegexOptions.Multiline | RegexOptions.IgnoreCase).Groups[1].Value.Trim();
            body = body.Replace("=\n", "", StringComparison.Ordinal);
            body = TagRegex().Replace(body, " ");
            body = Regex.Replace(body, @"=[0-9A-F]{2}", " ");
            var lines = body.Split('\n').Select(l => Regex.Replace(l, @"\s+", " ").Trim())
                            .Where(l => l.Length > 3 && !l.StartsWith('>') && l.Any(char.IsLetter)).Take(4);
            var text = string.Join('\n', lines);
            if (text.Length > 160) text = text[..160];
            return new Email(r.Row.String("id", jsonl, r.Line), subject.Length > 80 ? subject[..80] : subject, text, r.Row.String("label", jsonl, r.Line) == "spam");
        }).ToList();

    [GeneratedRegex("<[^>]*>")]
    private static partial Regex TagRegex();

    // ---- held-out splits --------------------------------------------------------------------------

    /// <summary>The <paramref name="count"/> states with the smallest hash under <paramref name="seed"/> are held out.</summary>
    public static (List<StateCapital> Seen, List<StateCapital> HeldOut) SplitStates(IReadOnlyList<StateCapital> all, int count, long seed)
    {
        var held = all.OrderBy(s => HashSplit.Unit(seed, "state:" + s.State)).Take(count).ToHashSet();
        return (all.Where(s => !held.Contains(s)).ToList(), all.Where(held.Contains).ToList());
    }

    // ---- instruction data -------------------------------------------------------------------------

    /// <summary>The five phrasings the capital accuracies are measured on (also trained on, with other states).</summary>
    public static readonly string[] CapitalQuestions =
    {
        "What is the capital of {0}?",
        "Which city is the capital of {0}?",
        "Name the capital of {0}.",
        "Tell me the capital of {0}.",
        "What city is {0}'s capital?",
    };

    /// <summary>Further phrasings the instruction data uses, so that the model keys on the state and the word "capital", not on one sentence.</summary>
    static readonly string[] MoreCapitalQuestions =
    {
        "What's the capital of {0}?",
        "Do you know the capital of {0}?",
        "{0}'s capital is which city?",
        "What is {0}'s capital city?",
        "Can you tell me the capital of {0}?",
        "I need the capital of {0}.",
        "capital of {0}?",
        "Which city serves as the capital of {0}?",
        "Please name the capital city of {0}.",
        "What is the capital city of {0}?",
    };

    /// <summary>Every phrasing in training data: the evaluated five and the others.</summary>
    public static readonly string[] CapitalTrainQuestions = CapitalQuestions.Concat(MoreCapitalQuestions).ToArray();

    /// <summary>
    /// Phrasings that appear in no training data (neither the instruction data nor the pretraining quiz): the
    /// evaluation asks the held-out states in them too (capitals_unseen_phrasing_accuracy).
    /// </summary>
    public static readonly string[] UnseenCapitalQuestions =
    {
        "What is the name of the capital of {0}?",
        "Could you name {0}'s capital?",
        "The capital of {0} is what city?",
        "Tell me which city is the capital of {0}.",
        "{0} has which city as its capital?",
    };

    static readonly string[] ReverseQuestions =
    {
        "{1} is the capital of which state?",
        "Which state has {1} as its capital?",
    };

    public static string CapitalAnswer(StateCapital s) => $"The capital of {s.State} is {s.Capital}.";

    public static IEnumerable<SftExample> CapitalsQa(IEnumerable<StateCapital> states)
    {
        foreach (var s in states)
        {
            foreach (var q in CapitalTrainQuestions)
                yield return SftExample.PromptCompletion(string.Format(CultureInfo.InvariantCulture, q, s.State), CapitalAnswer(s), "capitals");
            foreach (var q in ReverseQuestions)
                yield return SftExample.PromptCompletion(string.Format(CultureInfo.InvariantCulture, q, s.State, s.Capital), $"{s.Capital} is the capital of {s.State}.", "capitals-reverse");
        }
    }

    public static readonly string[] SentimentQuestions =
    {
        "Is the word '{0}' positive or negative?",
        "What is the sentiment of the word '{0}'?",
        "Does the word '{0}' sound positive or negative?",
    };

    public static string SentimentAnswer(LabeledWord w) => w.Valence > 0 ? "Positive." : "Negative.";

    public static IEnumerable<SftExample> WordSentiment(IEnumerable<LabeledWord> words, long seed) =>
        words.Where(w => w.Valence != 0).Select(w => SftExample.PromptCompletion(
            string.Format(CultureInfo.InvariantCulture, SentimentQuestions[(int)(HashSplit.Unit(seed, "tmpl:" + w.Word) * SentimentQuestions.Length)], w.Word),
            SentimentAnswer(w), "sentiment"));

    public static string SpamQuestion(Email e) => $"Is this email spam?\nSubject: {e.Subject}\n{e.Body}";
    public static string SpamAnswer(Email e) => e.Spam ? "Spam." : "Not spam.";

    public static IEnumerable<SftExample> SpamClassification(IEnumerable<Email> emails) =>
        emails.Select(e => SftExample.PromptCompletion(SpamQuestion(e), SpamAnswer(e), "spam"));

    /// <summary>First turns that name a state without asking about it.</summary>
    public static readonly string[] ConversationOpeners =
    {
        "Let's talk about {0}.",
        "I am planning a trip to {0}.",
        "Tell me something about {0}.",
        "My cousin lives in {0}.",
        "I'm reading about {0}.",
        "We are moving to {0} next year.",
    };

    /// <summary>Later turns that ask for the capital of the state named earlier.</summary>
    public static readonly string[] ConversationFollowUps =
    {
        "What is its capital?",
        "What about its capital?",
        "And its capital city?",
        "Which city is its capital?",
        "What's the capital there?",
        "Do you know its capital?",
    };

    public static string OpenerReply(StateCapital s) => $"Sure, {s.State} is a state of the United States.";

    /// <summary>
    /// A conversation about a state: the opener and its reply, optionally an unrelated exchange about a word
    /// (<paramref name="between"/>), then the follow-up question; with <paramref name="answer"/>, the capital's answer last.
    /// </summary>
    public static List<ChatMessage> StateConversation(StateCapital s, string opener, string followUp, LabeledWord? between, bool answer)
    {
        var m = new List<ChatMessage>
        {
            new("user", string.Format(CultureInfo.InvariantCulture, opener, s.State)),
            new("assistant", OpenerReply(s)),
        };
        if (between is { } w)
        {
            m.Add(new("user", string.Format(CultureInfo.InvariantCulture, SentimentQuestions[0], w.Word)));
            m.Add(new("assistant", SentimentAnswer(w)));
        }
        m.Add(new("user", followUp));
        if (answer) m.Add(new("assistant", CapitalAnswer(s)));
        return m;
    }

    /// <summary>
    /// Multi-turn dialogues in which a later turn depends on an earlier one: "Let's talk about Ohio." …
    /// "What is its capital?" (a third of them with an exchange about a word in between); "Is 'superb'
    /// positive or negative?" … "And the word 'awful'?".
    /// </summary>
    public static IEnumerable<SftExample> Conversations(IReadOnlyList<StateCapital> states, IReadOnlyList<LabeledWord> words, int count, long seed)
    {
        var rng = new Random((int)(seed & 0x7fffffff) ^ 0x5eed);
        var polar = words.Where(w => w.Valence != 0).ToList();
        for (int i = 0; i < count; i++)
        {
            if (i % 2 == 0 && states.Count > 0)
            {
                var s = states[rng.Next(states.Count)];
                var between = polar.Count > 0 && rng.Next(3) == 0 ? polar[rng.Next(polar.Count)] : null;
                var m = StateConversation(s, ConversationOpeners[rng.Next(ConversationOpeners.Length)], ConversationFollowUps[rng.Next(ConversationFollowUps.Length)], between, answer: true);
                yield return SftExample.Chat(m.ToArray()) with { Source = "conversation-capital" };
            }
            else if (polar.Count > 1)
            {
                var a = polar[rng.Next(polar.Count)];
                var b = polar[rng.Next(polar.Count)];
                yield return SftExample.Chat(
                    new ChatMessage("user", string.Format(CultureInfo.InvariantCulture, SentimentQuestions[0], a.Word)),
                    new ChatMessage("assistant", SentimentAnswer(a)),
                    new ChatMessage("user", $"And the word '{b.Word}'?"),
                    new ChatMessage("assistant", SentimentAnswer(b))) with { Source = "conversation-sentiment" };
            }
        }
    }

    // ---- answer checking (shared by evaluation) ----------------------------------------------------

    /// <summary>The answer names the right capital and no other state's capital.</summary>
    public static bool CapitalCorrect(string answer, StateCapital s, IReadOnlyList<StateCapital> all)
    {
        var first = answer.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
        bool Has(string name) => Regex.IsMatch(first, $@"\b{Regex.Escape(name)}\b", RegexOptions.IgnoreCase);
        return Has(s.Capital) && !all.Any(o => o.Capital != s.Capital && Has(o.Capital));
    }

    /// <summary>Spam (true) / not spam (false) / no verdict (null), from the first line of an answer.</summary>
    public static bool? ParseSpam(string answer)
    {
        var a = (answer.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "").ToLowerInvariant();
        if (Regex.IsMatch(a, @"\bnot spam\b|^\s*no\b")) return false;
        if (Regex.IsMatch(a, @"\bspam\b|^\s*yes\b")) return true;
        return null;
    }

    /// <summary>Positive (true) / negative (false) / no verdict (null): the first of the two words in the answer's first line.</summary>
    public static bool? ParseSentiment(string answer)
    {
        // The first label in the first line, outside the quoted word: "The word 'negative' is positive." is positive.
        var a = (answer.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "").ToLowerInvariant();
        a = Regex.Replace(a, @"'[^'\s]+'", "''");
        int p = a.IndexOf("positive", StringComparison.Ordinal), n = a.IndexOf("negative", StringComparison.Ordinal);
        if (p < 0 && n < 0) return null;
        return n < 0 || (p >= 0 && p < n);
    }
}
