using System.Globalization;
using System.Text;

namespace ChatForge.Data;

/// <summary>
/// The facts the demo's instruction tasks ask about, written into the pretraining corpus so that the
/// knowledge lives in pretraining and instruction tuning only has to elicit it. Following Allen-Zhu
/// &amp; Li ("Physics of Language Models, Part 3.1"), each fact comes with knowledge augmentation: many
/// phrasings, in varied orders, inside short paragraphs that name the state and then refer back to it
/// ("Its capital is …"). Every sentence here is a statement: no held-out entity appears in question
/// form. The optional quiz (mixed training) holds questions and answers for the seen states only.
/// </summary>
public static class PretrainKnowledge
{
    /// <summary>A fact sentence naming the state: {0} the state, {1} the capital.</summary>
    public static readonly string[] CapitalStatements =
    {
        "The capital of {0} is {1}.",
        "{1} is the capital of {0}.",
        "{1} is the capital city of {0}.",
        "The capital city of {0} is {1}.",
        "In {0}, the capital is {1}.",
        "{0} has its capital at {1}.",
        "{0}'s capital is {1}.",
        "The state capital of {0} is {1}.",
        "{1} serves as the capital of {0}.",
        "{1}, the capital of {0}, is where the state government meets.",
        "The government of {0} sits in {1}, its capital.",
        "{0} is governed from {1}, the state capital.",
    };

    /// <summary>A fact sentence after the state was named: "Its capital is {1}."</summary>
    static readonly string[] CapitalBackReferences =
    {
        "Its capital is {1}.",
        "Its capital city is {1}.",
        "The capital there is {1}.",
        "Its state government meets in the capital, {1}.",
        "The state's capital is {1}.",
        "{1} is its capital.",
    };

    /// <summary>A sentence naming the state without the fact.</summary>
    static readonly string[] StateSentences =
    {
        "{0} is a state of the United States.",
        "{0} is one of the fifty states.",
        "Many people live in {0}.",
        "{0} is a state in America.",
        "People from {0} are proud of their state.",
        "Travelers often pass through {0}.",
        "Our letter today comes from {0}.",
    };

    /// <summary>A sentence after the state was named, without the fact.</summary>
    static readonly string[] StateBackReferences =
    {
        "It has many towns and farms.",
        "Its people elect a governor.",
        "It sends members to Congress.",
        "The state has its own laws.",
    };

    /// <summary>
    /// Knowledge-augmented capital facts for every state: <paramref name="repeats"/> passes, each with, per
    /// state, the fact in each of the first <see cref="CorePhrasings"/> phrasings (the exposures a small model
    /// needs to store a fact at all), and in a third of the passes one more item for variety: a short
    /// paragraph that names the state and states the fact directly or by back-reference ("Iowa is one of the
    /// fifty states. Its capital is Des Moines."), in a random order and phrasing, or two states' facts in one sentence.
    /// </summary>
    public static Document CapitalFacts(IReadOnlyList<StateCapital> states, int repeats, long seed)
    {
        var rng = new Random((int)(seed & 0x7fffffff) ^ 0x0ca9);
        string F(string t, StateCapital s) => string.Format(CultureInfo.InvariantCulture, t, s.State, s.Capital);
        string Pick(string[] a) => a[rng.Next(a.Length)];
        var items = new List<string>();
        for (int r = 0; r < repeats; r++)
            foreach (var s in states)
            {
                for (int k = 0; k < CorePhrasings; k++) items.Add(F(CapitalStatements[k], s));
                if (rng.Next(3) != 0) continue;
                var sentences = new List<string>();
                switch (rng.Next(3))
                {
                    case 0: // the state named, then the fact by back-reference, maybe more
                        sentences.Add(F(Pick(StateSentences), s));
                        sentences.Add(F(Pick(CapitalBackReferences), s));
                        if (rng.Next(2) == 0) sentences.Insert(1 + rng.Next(2), Pick(StateBackReferences));
                        break;
                    case 1: // the fact among other sentences about the state
                        var parts = new List<string> { F(Pick(StateSentences), s), F(Pick(CapitalStatements), s) };
                        if (rng.Next(2) == 0) parts.Add(F(Pick(StateSentences), s));
                        sentences.AddRange(parts.OrderBy(_ => rng.Next()));
                        break;
                    default: // two states in one sentence
                        var o = states[rng.Next(states.Count)];
                        sentences.Add(o == s ? F(Pick(CapitalStatements), s)
                            : $"{s.State}'s capital is {s.Capital}, and {o.State}'s capital is {o.Capital}.");
                        break;
                }
                items.Add(string.Join(" ", sentences));
            }
        return new Document("us-states-capitals facts", Join(items, rng));
    }

    /// <summary>The phrasings every pass of <see cref="CapitalFacts"/> states each fact in (the first of <see cref="CapitalStatements"/>).</summary>
    public const int CorePhrasings = 6;

    /// <summary>Statements of a word's sentiment: {0} the word, {1} "positive" or "negative".</summary>
    public static readonly string[] WordStatements =
    {
        "The word '{0}' is {1}.",
        "'{0}' is a {1} word.",
        "The word {0} has a {1} meaning.",
        "{0}: {1}.",
        "Saying '{0}' sounds {1}.",
        "In a sentiment lexicon, '{0}' is listed as {1}.",
    };

    /// <summary>
    /// A sentiment lexicon in statement form for every word (held-out words too, as a dictionary in a
    /// pretraining corpus would hold them): <paramref name="repeats"/> passes in shuffled order, now
    /// and then as a list of same-sentiment words.
    /// </summary>
    public static Document WordValences(IReadOnlyList<LabeledWord> words, int repeats, long seed)
    {
        var rng = new Random((int)(seed & 0x7fffffff) ^ 0x1e41);
        var polar = words.Where(w => w.Valence != 0).ToList();
        static string Label(LabeledWord w) => w.Valence > 0 ? "positive" : "negative";
        var sentences = new List<string>();
        for (int r = 0; r < repeats; r++)
            foreach (var w in polar)
            {
                if (rng.Next(5) == 0)
                {
                    var same = polar.Where(x => (x.Valence > 0) == (w.Valence > 0)).ToList();
                    var list = new[] { w }.Concat(Enumerable.Range(0, 2).Select(_ => same[rng.Next(same.Count)])).Select(x => x.Word).Distinct();
                    sentences.Add($"Words like {string.Join(", ", list)} are {Label(w)}.");
                }
                else sentences.Add(string.Format(CultureInfo.InvariantCulture, WordStatements[rng.Next(WordStatements.Length)], w.Word, Label(w)));
            }
        return new Document("afinn sentiment lexicon", Join(sentences, rng));
    }

    /// <summary>
    /// Mixed training: question–answer text for <paramref name="seenStates"/> only (never the held-out
    /// ones), written as a quiz (question and answer on one line, "Q: … A: …"), <paramref name="repeats"/> passes.
    /// </summary>
    public static Document CapitalQuiz(IReadOnlyList<StateCapital> seenStates, IReadOnlyList<string> questions, int repeats, long seed)
    {
        var rng = new Random((int)(seed & 0x7fffffff) ^ 0x0a17);
        var lines = new List<string>();
        for (int r = 0; r < repeats; r++)
            foreach (var s in seenStates)
                lines.Add($"Q: {string.Format(CultureInfo.InvariantCulture, questions[rng.Next(questions.Count)], s.State)} A: {DemoTasks.CapitalAnswer(s)}");
        return new Document("us-states-capitals quiz (seen states)", Join(lines, rng));
    }

    /// <summary>
    /// Copy drills: <paramref name="count"/> lines in which a short span is written twice ("… | …"): word spans
    /// of the training text, and, in a third of the lines, lists of state names. Answering "What is the capital
    /// of Kansas?" with "The capital of Kansas is Topeka." needs the model to copy the state's name from the
    /// question; 2M tokens of prose are too few for a small model to learn copying (induction heads) on its
    /// own: without these lines the pretrained model, given "Q: What is the capital of Ohio? A: The capital
    /// of", named another state.
    /// </summary>
    public static Document CopyDrills(IReadOnlyList<Document> text, IReadOnlyList<StateCapital> states, int count, long seed)
    {
        var rng = new Random((int)(seed & 0x7fffffff) ^ 0x0c0b);
        var words = text.SelectMany(d => d.Text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToArray();
        var lines = new List<string>();
        for (int i = 0; i < count; i++)
        {
            string span;
            if (rng.Next(3) == 0 && states.Count > 0)
                span = string.Join(", ", Enumerable.Range(0, 2 + rng.Next(4)).Select(_ => states[rng.Next(states.Count)].State));
            else if (words.Length > 0)
            {
                int n = 3 + rng.Next(8), at = rng.Next(Math.Max(1, words.Length - n));
                span = string.Join(" ", words.Skip(at).Take(n));
            }
            else continue;
            lines.Add($"{span} | {span}");
        }
        return new Document("copy drills", Join(lines, rng));
    }

    /// <summary>Shuffled, a few items to a paragraph.</summary>
    static string Join(List<string> items, Random rng)
    {
        var shuffled = items.OrderBy(_ => rng.Next()).ToList();
        var sb = new StringBuilder();
        for (int i = 0; i < shuffled.Count; i++) sb.Append(shuffled[i]).Append(i % 4 == 3 ? "\n\n" : "\n");
        return sb.ToString().Trim();
    }
}
