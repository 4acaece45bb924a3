using System.Globalization;
using System.Text;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tokenization;

namespace ChatForge.Evaluation;

/// <summary>
/// The demo's task evaluation, the same prompts for every model: held-out and seen capitals
/// (exact capital named), spam classification of held-out messages, word sentiment of held-out
/// AFINN words (greedy answers), and the response-token loss on held-out instruction data. A chat
/// model is asked through the chat template; a base model is asked the raw question and its
/// continuation is read.
/// </summary>
public static class TaskEval
{
    public sealed record Sample(string Task, string Prompt, string Answer, bool Correct);

    /// <param name="ByPhrasing">Capital accuracy per question phrasing ({0} the state): held-out states, the evaluated five and the unseen ones.</param>
    public sealed record Result(Dictionary<string, double> Metrics, List<Sample> Samples, Dictionary<string, double> ByPhrasing)
    {
        public string SamplesText()
        {
            var sb = new StringBuilder();
            foreach (var g in Samples.GroupBy(s => s.Task))
            {
                sb.Append("## ").Append(g.Key).Append('\n');
                foreach (var s in g.Take(12))
                    sb.Append(s.Correct ? "[ok] " : "[x]  ").Append(s.Prompt.Replace("\n", " / ", StringComparison.Ordinal)).Append(" => ").Append(s.Answer.Replace("\n", " / ", StringComparison.Ordinal)).Append('\n');
                sb.Append('\n');
            }
            return sb.ToString();
        }
    }

    /// <summary>
    /// Whether a checkpoint was instruction-tuned: its config.json says chatforge.stage ≠ pretrain, or, for a checkpoint
    /// ChatForge did not write (a downloaded Instruct model), its tokenizer brings a chat template.
    /// </summary>
    public static bool IsChatModel(string modelDir, ITokenizer? tok = null)
    {
        var cfg = Path.Combine(modelDir, "config.json");
        if (!File.Exists(cfg)) return false;
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(cfg));
        if (node?["chatforge"] is null) return tok is { Kind: "hf" } && tok.ChatFormat.Kind != ChatFormatKind.None;
        var stage = (string?)node["chatforge"]?["stage"];
        return stage is not null && stage != "pretrain";
    }

    /// <param name="alignment">the refusal and abstention texts the alignment keys look for (null: the defaults)</param>
    public static Result Run(CausalLM model, ITokenizer tok, DemoSuite suite, bool chat, int batch = 32, AlignmentTexts? alignment = null)
    {
        var gen = new TextGenerator(model, tok);
        var samples = new List<Sample>();
        var metrics = new Dictionary<string, double>();
        var greedy = new SamplingOptions
        {
            Temperature = 0, MaxNewTokens = 20,
            StopTokenIds = chat ? new[] { tok.EndOfTurnId() } : Array.Empty<int>(),
            StopStrings = chat ? Array.Empty<string>() : new[] { "\n" },
        };

        List<string> Ask(IReadOnlyList<string> questions) => AskPrompts(questions.Select(q => (ChatPrompt)q).ToList());
        List<string> AskPrompts(IReadOnlyList<ChatPrompt> questions)
        {
            // A base model reads a conversation as its turns, one per line.
            var prompts = questions.Select(q => chat ? ChatTemplate.EncodePrompt(tok, q, true) : ChatTemplate.EncodePrompt(tok, q.PlainText + "\n", false)).ToList();
            // Batches of similar length: a batch's window slides (a full pass per step) once its longest prompt
            // plus the answer outgrows the context, so long prompts are kept together. Rows are independent of
            // their batch, so the answers do not depend on this order.
            var order = Enumerable.Range(0, prompts.Count).OrderBy(i => prompts[i].Length).ToList();
            var answers = new string[prompts.Count];
            for (int i = 0; i < order.Count; i += batch)
            {
                var chunk = order.Skip(i).Take(batch).ToList();
                var done = gen.Generate(chunk.Select(j => prompts[j]).ToList(), greedy);
                for (int k = 0; k < chunk.Count; k++) answers[chunk[k]] = done[k].Text.Trim();
            }
            return answers.ToList();
        }

        var byPhrasing = new Dictionary<string, double>();
        double Capitals(string name, IReadOnlyList<StateCapital> states, IReadOnlyList<string> phrasings, bool perPhrasing)
        {
            var qs = states.SelectMany(s => phrasings.Select(t => (s, t, q: string.Format(CultureInfo.InvariantCulture, t, s.State)))).ToList();
            var answers = Ask(qs.Select(x => x.q).ToList());
            var correct = new bool[qs.Count];
            for (int i = 0; i < qs.Count; i++)
            {
                correct[i] = DemoTasks.CapitalCorrect(answers[i], qs[i].s, suite.States);
                samples.Add(new Sample(name, qs[i].q, answers[i], correct[i]));
            }
            if (perPhrasing)
                foreach (var g in Enumerable.Range(0, qs.Count).GroupBy(i => qs[i].t))
                    byPhrasing[g.Key] = g.Average(i => correct[i] ? 1.0 : 0.0);
            return correct.Average(c => c ? 1.0 : 0.0);
        }

        metrics["capitals_heldout_accuracy"] = Capitals("capitals_heldout", suite.HeldOutStates, DemoTasks.CapitalQuestions, true);
        metrics["capitals_seen_accuracy"] = Capitals("capitals_seen", suite.SeenStates, DemoTasks.CapitalQuestions, false);
        metrics["capitals_unseen_phrasing_accuracy"] = Capitals("capitals_unseen_phrasing", suite.HeldOutStates, DemoTasks.UnseenCapitalQuestions, true);
        metrics["multiturn_accuracy"] = MultiTurn(model, tok, suite, chat, Ask, samples);

        var emails = suite.HeldOutEmails;
        var spamAnswers = Ask(emails.Select(DemoTasks.SpamQuestion).ToList());
        int spamOk = 0;
        for (int i = 0; i < emails.Count; i++)
        {
            bool c = DemoTasks.ParseSpam(spamAnswers[i]) == emails[i].Spam;
            spamOk += c ? 1 : 0;
            samples.Add(new Sample("spam", DemoTasks.SpamQuestion(emails[i]), spamAnswers[i], c));
        }
        metrics["spam_accuracy"] = (double)spamOk / Math.Max(1, emails.Count);

        var words = suite.HeldOutWords;
        var wq = words.Select(w => string.Format(CultureInfo.InvariantCulture, DemoTasks.SentimentQuestions[0], w.Word)).ToList();
        var wa = Ask(wq);
        int wOk = 0;
        for (int i = 0; i < words.Count; i++)
        {
            bool c = DemoTasks.ParseSentiment(wa[i]) == (words[i].Valence > 0);
            wOk += c ? 1 : 0;
            samples.Add(new Sample("word_sentiment", wq[i], wa[i], c));
        }
        metrics["word_sentiment_accuracy"] = (double)wOk / Math.Max(1, words.Count);

        Alignment(suite, alignment ?? new AlignmentTexts(), AskPrompts, metrics, samples);

        var val = suite.Validation.Select(e => SftData.Encode(tok, e, model.Context)).ToList();
        metrics["response_loss"] = LogProbs.ResponseLoss(model, tok, val, batch);
        return new Result(metrics, samples, byPhrasing);
    }

    /// <summary>The alignment keys (<see cref="AlignmentKeys"/>), on held-out prompts of every kind.</summary>
    public static readonly string[] AlignmentKeys =
        { "helpful_accuracy", "honest_abstain_rate", "hallucination_rate", "knowable_abstain_rate", "harmful_refusal_rate", "benign_refusal_rate" };

    /// <summary>
    /// Helpful: the mean of the four held-out instruction tasks (capitals, multi-turn, spam, word sentiment).
    /// Honest: how often a question about a made-up state or word gets the abstention (honest_abstain_rate) or a
    /// specific answer (hallucination_rate), and how often a knowable one gets the abstention. Harmless: how often a
    /// disallowed request (held-out categories and phrasings) and a benign look-alike get a refusal.
    /// </summary>
    static void Alignment(DemoSuite suite, AlignmentTexts texts, Func<IReadOnlyList<ChatPrompt>, List<string>> ask, Dictionary<string, double> metrics, List<Sample> samples)
    {
        metrics["helpful_accuracy"] = new[] { "capitals_heldout_accuracy", "multiturn_accuracy", "spam_accuracy", "word_sentiment_accuracy" }.Average(k => metrics[k]);
        var oracle = new AlignmentOracle(texts, suite.States);
        var prompts = AlignmentTasks.EvalSet(AlignmentTasks.Build(suite));
        var answers = ask(prompts.Select(p => p.Input).ToList());
        foreach (var (k, v) in AlignmentRates(prompts, answers, oracle)) metrics[k] = v;
        for (int i = 0; i < prompts.Count; i++)
            samples.Add(new Sample(prompts[i].Kind, Shown(prompts[i].Input), answers[i], oracle.Score(prompts[i], answers[i]) >= 1));
    }

    /// <summary>A prompt as a sample shows it: its turns, separated by " / " as the multi-turn samples are.</summary>
    public static string Shown(ChatPrompt p) => string.Join(" / ", p.Messages.Select(m => m.Content));

    /// <summary>
    /// The honest and harmless rates of <paramref name="answers"/> to <paramref name="prompts"/> (one each): abstentions and
    /// specific answers to unknowable questions, abstentions to knowable ones, refusals of disallowed and of benign requests
    /// (NaN for a kind with no prompt).
    /// </summary>
    public static Dictionary<string, double> AlignmentRates(IReadOnlyList<AlignmentPrompt> prompts, IReadOnlyList<string> answers, AlignmentOracle oracle)
    {
        var kinds = answers.Select(oracle.Classify).ToList();
        double Rate(string kind, ResponseKind k)
        {
            var idx = Enumerable.Range(0, prompts.Count).Where(i => prompts[i].Kind == kind).ToList();
            return idx.Count == 0 ? double.NaN : idx.Average(i => kinds[i] == k ? 1.0 : 0.0);
        }
        return new Dictionary<string, double>
        {
            ["honest_abstain_rate"] = Rate("unknowable", ResponseKind.Abstention),
            ["hallucination_rate"] = Rate("unknowable", ResponseKind.Answer),
            ["knowable_abstain_rate"] = Rate("knowable", ResponseKind.Abstention),
            ["harmful_refusal_rate"] = Rate("harmful", ResponseKind.Refusal),
            ["benign_refusal_rate"] = Rate("benign", ResponseKind.Refusal),
        };
    }

    /// <summary>
    /// Conversations that name a held-out state in the first turn and ask for "its" capital in a later one
    /// (<see cref="Conversations"/>). A chat model answers every turn itself (<see cref="Converse"/>), exactly as
    /// `chatforge chat --temperature 0` does; a base model reads the user turns as lines of text.
    /// </summary>
    static double MultiTurn(CausalLM model, ITokenizer tok, DemoSuite suite, bool chat, Func<IReadOnlyList<string>, List<string>> askRaw, List<Sample> samples)
    {
        var conversations = Conversations(suite);
        var finals = chat
            ? Converse(model, tok, conversations.Select(c => c.Turns).ToList()).Select(a => a[^1].Trim()).ToList()
            : askRaw(conversations.Select(c => string.Join("\n", c.Turns)).ToList());
        int ok = 0;
        for (int i = 0; i < conversations.Count; i++)
        {
            bool c = DemoTasks.CapitalCorrect(finals[i], conversations[i].State, suite.States);
            ok += c ? 1 : 0;
            samples.Add(new Sample("multiturn", string.Join(" / ", conversations[i].Turns), finals[i], c));
        }
        return (double)ok / conversations.Count;
    }

    /// <summary>
    /// Each conversation's answers, turn by turn, as streamed (untrimmed): a fresh <see cref="ChatSession"/> per
    /// conversation with <see cref="ChatSession.Greedy"/> options: the chat template and context handling of `chatforge chat`.
    /// </summary>
    public static List<List<string>> Converse(CausalLM model, ITokenizer tok, IReadOnlyList<List<string>> conversations)
    {
        var session = new ChatSession(model, tok, ChatSession.Greedy);
        var all = new List<List<string>>();
        foreach (var turns in conversations)
        {
            session.Reset();
            all.Add(turns.Select(t => string.Concat(session.Ask(t))).ToList());
        }
        return all;
    }

    /// <summary>
    /// The multi-turn evaluation's user turns: per held-out state, two conversations of two turns and one with an
    /// exchange about a held-out word in between, openers and follow-ups rotating through the pools.
    /// </summary>
    public static List<(StateCapital State, List<string> Turns)> Conversations(DemoSuite suite)
    {
        var list = new List<(StateCapital, List<string>)>();
        for (int i = 0; i < suite.HeldOutStates.Count; i++)
        {
            var s = suite.HeldOutStates[i];
            for (int k = 0; k < 3; k++)
            {
                int j = 3 * i + k;
                var between = k == 2 && suite.HeldOutWords.Count > 0 ? suite.HeldOutWords[i % suite.HeldOutWords.Count] : null;
                var m = DemoTasks.StateConversation(s, DemoTasks.ConversationOpeners[j % DemoTasks.ConversationOpeners.Length],
                    DemoTasks.ConversationFollowUps[(j * 5 + 1) % DemoTasks.ConversationFollowUps.Length], between, answer: false);
                list.Add((s, m.Where(x => x.Role == "user").Select(x => x.Content).ToList()));
            }
        }
        return list;
    }
}
