using ChatForge.Tokenization;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// The demo's instruction data and its held-out evaluation sets, built from the real corpora. The
/// held-out entities are chosen with a fixed task seed (not the run seed), so every model — base, SFT,
/// aligned — is evaluated on the same held-out states, words and messages.
/// </summary>
public sealed record DemoSuite(
    IReadOnlyList<StateCapital> States,
    IReadOnlyList<StateCapital> SeenStates,
    IReadOnlyList<StateCapital> HeldOutStates,
    IReadOnlyList<LabeledWord> TrainWords,
    IReadOnlyList<LabeledWord> HeldOutWords,
    IReadOnlyList<Email> TrainEmails,
    IReadOnlyList<Email> HeldOutEmails,
    List<SftExample> Train,
    List<SftExample> Validation)
{
    public const long TaskSeed = 2024;
    public const int HeldOutStateCount = 10;

    /// <param name="textExamples">Plain-text passages from the pretraining training split mixed in ({"text"}), so the
    /// model keeps continuing ordinary text (the sentiment task prompts the SFT model with raw text).</param>
    /// <param name="split">The pretraining split the passages keep to (null: the default pretraining config's).</param>
    public static DemoSuite Build(Corpora c, int sentimentExamples = 1000, int spamExamples = 600, int conversations = 400,
                                  int heldOutWords = 200, int heldOutEmails = 200, int textExamples = 150, PretrainSplit? split = null,
                                  int knowledgeExamples = 0, AlignmentTexts? alignment = null)
    {
        var states = DemoTasks.LoadCapitals(c.StatesCapitals);
        var (seen, held) = DemoTasks.SplitStates(states, HeldOutStateCount, TaskSeed);

        var words = DemoTasks.LoadAfinn(c.Afinn).Where(w => w.Valence != 0 && !w.Word.Contains(' ')).ToList();
        var orderedWords = words.OrderBy(w => HashSplit.Unit(TaskSeed, "word:" + w.Word)).ToList();
        var heldWords = orderedWords.Take(heldOutWords).ToList();
        var trainWords = orderedWords.Skip(heldOutWords).ToList();

        // Balanced spam/ham; held-out messages first.
        var emails = DemoTasks.LoadSpam(c.SpamAssassin).Where(e => e.Body.Length > 0 || e.Subject.Length > 0)
            .OrderBy(e => HashSplit.Unit(TaskSeed, "email:" + e.Id)).ToList();
        var spam = emails.Where(e => e.Spam).ToList();
        var ham = emails.Where(e => !e.Spam).ToList();
        var heldEmails = spam.Take(heldOutEmails / 2).Concat(ham.Take(heldOutEmails / 2)).ToList();
        var trainEmails = spam.Skip(heldOutEmails / 2).Take(spamExamples / 2).Concat(ham.Skip(heldOutEmails / 2).Take(spamExamples / 2)).ToList();

        var all = new List<SftExample>();
        all.AddRange(DemoTasks.CapitalsQa(seen));
        all.AddRange(DemoTasks.WordSentiment(trainWords.Take(sentimentExamples), TaskSeed));
        all.AddRange(DemoTasks.SpamClassification(trainEmails));
        all.AddRange(DemoTasks.Conversations(seen, trainWords, conversations, TaskSeed));
        // Refusals, benign answers and abstentions for a minority of the seen harm categories and made-up names.
        all.AddRange(AlignmentTasks.SftExamples(AlignmentTasks.Build(states, seen, held, trainWords, heldWords), alignment ?? new AlignmentTexts()));
        if (textExamples > 0)
        {
            var (trainDocs, _) = (split ?? PretrainSplit.Default).Apply(TextCorpus.Load(new[] { c.MobyDick, c.Sotu })); // pretraining's split
            var passages = trainDocs.SelectMany(d => TextCorpus.Blocks(d.Text, 150)).Where(p => p.Length is > 120 and < 320)
                .OrderBy(p => HashSplit.Unit(TaskSeed, "text:" + p)).Take(textExamples);
            all.AddRange(passages.Select(p => new SftExample(null, p, "text")));
        }
        if (knowledgeExamples > 0)
        {
            // Replay of pretraining's statement-form facts (every state and word, in statement form only), so that
            // fine-tuning does not overwrite them: half capital paragraphs, half lexicon lines.
            var facts = PretrainKnowledge.CapitalFacts(states, 1 + knowledgeExamples / (2 * states.Count), TaskSeed).Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var lexicon = PretrainKnowledge.WordValences(words, 1, TaskSeed).Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            all.AddRange(facts.Take(knowledgeExamples / 2).Concat(lexicon.Take(knowledgeExamples - knowledgeExamples / 2))
                .Select(t => new SftExample(null, t, "knowledge")));
        }
        // 5% of the instruction data is held out for the response-token loss (validation); plain text is training-only.
        var train = all.Where(e => e.Messages is null || HashSplit.Unit(TaskSeed, "sft:" + Key(e)) >= 0.05).ToList();
        var val = all.Where(e => e.Messages is not null && HashSplit.Unit(TaskSeed, "sft:" + Key(e)) < 0.05)
                     .GroupBy(Key).Select(g => g.First()).ToList();
        train = train.Where(e => e.Messages is null || !val.Any(v => Key(v) == Key(e))).ToList();
        return new DemoSuite(states, seen, held, trainWords, heldWords, trainEmails, heldEmails, train, val);
    }

    static string Key(SftExample e) => e.Messages is { } m ? string.Join("\u0001", m.Select(x => x.Role + ":" + x.Content)) : e.Text ?? "";
}
