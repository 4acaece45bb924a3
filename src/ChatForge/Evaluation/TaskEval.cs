using System.Globalization;
using System.Text;
using ChatForge.Data;
using ChatForge.Generation;
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

    public sealed record Result(Dictionary<string, double> Metrics, List<Sample> Samples)
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

    /// <summary>Whether a checkpoint was instruction-tuned (its config.json says chatforge.stage ≠ pretrain).</summary>
    public static bool IsChatModel(string modelDir)
    {
        var cfg = Path.Combine(modelDir, "config.json");
        if (!File.Exists(cfg)) return false;
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(cfg));
        var stage = (string?)node?["chatforge"]?["stage"];
        return stage is not null && stage != "pretrain";
    }

    public static Result Run(Gpt model, ITokenizer tok, DemoSuite suite, bool chat, int batch = 32)
    {
        var gen = new TextGenerator(model, tok);
        var samples = new List<Sample>();
        var metrics = new Dictionary<string, double>();
        var greedy = new SamplingOptions
        {
            Temperature = 0, MaxNewTokens = 20,
            StopTokenIds = chat ? new[] { tok.Id(SpecialTokens.ImEnd) } : Array.Empty<int>(),
            StopStrings = chat ? Array.Empty<string>() : new[] { "\n" },
        };

        List<string> Ask(IReadOnlyList<string> questions)
        {
            var prompts = questions.Select(q => ChatTemplate.EncodePrompt(tok, chat ? q : q + "\n", chat)).ToList();
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

        double Capitals(string name, IReadOnlyList<StateCapital> states)
        {
            var qs = states.SelectMany(s => DemoTasks.CapitalQuestions.Select(t => (s, q: string.Format(CultureInfo.InvariantCulture, t, s.State)))).ToList();
            var answers = Ask(qs.Select(x => x.q).ToList());
            int ok = 0;
            for (int i = 0; i < qs.Count; i++)
            {
                bool c = DemoTasks.CapitalCorrect(answers[i], qs[i].s, suite.States);
                ok += c ? 1 : 0;
                samples.Add(new Sample(name, qs[i].q, answers[i], c));
            }
            return (double)ok / qs.Count;
        }

        metrics["capitals_heldout_accuracy"] = Capitals("capitals_heldout", suite.HeldOutStates);
        metrics["capitals_seen_accuracy"] = Capitals("capitals_seen", suite.SeenStates);

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

        var val = suite.Validation.Select(e => SftData.Encode(tok, e, model.Config.NPositions)).ToList();
        metrics["response_loss"] = LogProbs.ResponseLoss(model, tok, val, batch);
        return new Result(metrics, samples);
    }
}
