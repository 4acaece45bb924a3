using System.Text.RegularExpressions;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Sft;

/// <summary>
/// What the instruction-tuning evaluation claims rests on the training data: held-out states are never
/// asked about in any training data, unseen phrasings are unseen, and the multi-turn evaluation talks
/// to the model exactly as `chatforge chat` does.
/// </summary>
public class GeneralisationTests
{
    /// <summary>
    /// All training text: the pretraining knowledge documents (quiz on) with the SFT's plain-text examples
    /// (knowledge replay on), line by line, and every SFT chat message.
    /// </summary>
    static (DemoSuite Suite, List<string> TextLines, List<string> SftMessages) TrainingText(TempDir d)
    {
        var cache = FakeCorpora.Create(d["cache"]);
        var c = PretrainConfig.Tiny with { Cache = cache, CapitalStatements = 4, WordStatements = 2, CapitalQuiz = 4 };
        var docs = Pretrainer.KnowledgeDocuments(c, new[] { new Document("prose", "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.") });
        var suite = DemoSuite.Build(Corpora.Open(cache), sentimentExamples: 10, spamExamples: 20, conversations: 40, heldOutWords: 6, heldOutEmails: 10,
                                    knowledgeExamples: 60);
        Assert.Contains(suite.Train, e => e.Source == "knowledge");
        var lines = docs.Select(x => x.Text).Concat(suite.Train.Where(e => e.Text is not null).Select(e => e.Text!))
            .SelectMany(t => t.Split('\n')).Where(l => l.Length > 0).ToList();
        var messages = suite.Train.Concat(suite.Validation).SelectMany(e => e.Messages ?? (IReadOnlyList<ChatForge.Tokenization.ChatMessage>)Array.Empty<ChatForge.Tokenization.ChatMessage>())
            .Select(m => m.Content).ToList();
        return (suite, lines, messages);
    }

    static bool Names(string text, string name) => Regex.IsMatch(text, $@"\b{Regex.Escape(name)}\b");

    [Fact]
    public void Held_out_states_appear_in_no_question_or_answer_of_any_training_data()
    {
        using var d = new TempDir();
        var (suite, text, sft) = TrainingText(d);
        var questions = text.Where(l => l.Contains('?')).ToList();
        Assert.NotEmpty(questions); // the quiz (mixed training) is on: its questions are checked, not absent
        foreach (var s in suite.HeldOutStates)
        {
            Assert.DoesNotContain(questions, q => Names(q, s.State) || Names(q, s.Capital));
            Assert.DoesNotContain(text, l => l.StartsWith("Q:", StringComparison.Ordinal) && (Names(l, s.State) || Names(l, s.Capital)));
            Assert.DoesNotContain(sft, m => Names(m, s.State) || Names(m, s.Capital));
            // … while pretraining states the fact, which the instruction-tuned model is to draw on.
            Assert.Contains(text, l => Names(l, s.State) && Names(l, s.Capital));
        }
        foreach (var s in suite.SeenStates.Take(3))
            Assert.Contains(sft, m => Names(m, s.State)); // not vacuous: seen states are asked about
        foreach (var w in suite.HeldOutWords)
            Assert.DoesNotContain(sft, m => m.Contains($"'{w.Word}'", StringComparison.Ordinal));
    }

    [Fact]
    public void Unseen_phrasings_are_in_no_training_data_and_the_evaluated_five_are_trained_on()
    {
        using var d = new TempDir();
        var (_, text, sft) = TrainingText(d);
        foreach (var t in DemoTasks.UnseenCapitalQuestions)
        {
            var pattern = new Regex(Regex.Escape(t).Replace(@"\{0}", ".+", StringComparison.Ordinal), RegexOptions.IgnoreCase);
            Assert.DoesNotContain(sft, m => pattern.IsMatch(m));
            Assert.DoesNotContain(text, l => pattern.IsMatch(l));
            Assert.DoesNotContain(t, DemoTasks.CapitalTrainQuestions);
        }
        foreach (var t in DemoTasks.CapitalQuestions) Assert.Contains(t, DemoTasks.CapitalTrainQuestions);
        // The quiz asks in the trained phrasings: at least one of them is found in pretraining.
        Assert.Contains(text, l => l.StartsWith("Q: ", StringComparison.Ordinal) && l.Contains(" A: The capital of ", StringComparison.Ordinal));
    }

    [Fact]
    public void Chat_on_stdin_gives_the_multi_turn_evaluation_s_answers()
    {
        using var d = new TempDir();
        var cache = FakeCorpora.Create(d["cache"]);
        var suite = DemoSuite.Build(Corpora.Open(cache), sentimentExamples: 10, spamExamples: 20, conversations: 20, heldOutWords: 6, heldOutEmails: 10);
        var dir = TinyBase.Create(d["model"]);
        var conversations = TaskEval.Conversations(suite).Take(4).Select(c => c.Turns).ToList();
        Assert.Contains(conversations, c => c.Count == 3); // one with an exchange in between
        var (model, tok, _) = HfCheckpoint.Load(dir);
        var expected = TaskEval.Converse(model, tok, conversations);

        var stdin = string.Concat(conversations.Select(c => string.Concat(c.Select(t => t + "\n")) + "/reset\n"));
        var o = new StringWriter(); var e = new StringWriter();
        int code = ChatForge.Cli.CliApp.Run(new[] { "chat", "--model", dir, "--temperature", "0" }, o, e, new StringReader(stdin));
        Assert.True(code == 0, e.ToString());
        // stdout: "> " before each line read, each answer streamed and ended with a newline; /reset and EOF print only "> ".
        var want = string.Concat(expected.Select(c => string.Concat(c.Select(a => "> " + a + "\n")) + "> ")) + "> ";
        Assert.Equal(want, o.ToString().Replace("\r\n", "\n", StringComparison.Ordinal));
        Assert.Contains(expected, c => c.Any(a => a.Length > 0));
    }

    [Fact]
    public void A_few_turns_stay_in_the_context_whatever_the_answer_token_limit()
    {
        var (model, tok, _) = HfCheckpoint.Load(TinyBase.Create(Path.Combine(Path.GetTempPath(), "chatforge-turns-" + Guid.NewGuid().ToString("N"))));
        // The limit exceeds the 128-token context: the history kept must not depend on it.
        var session = new ChatSession(model, tok, new SamplingOptions { Temperature = 0, MaxNewTokens = 500 });
        foreach (var (u, a) in new[] { ("Hi", "Hello."), ("Ohio", "OK."), ("Its capital?", "Columbus.") })
        {
            session.PromptFor(u);
            Assert.Equal(0, session.DroppedMessages);
            session.Add(new ChatForge.Tokenization.ChatMessage("assistant", a));
        }
        Assert.Equal(6, session.History.Count);
        // A history longer than the context less the answer room drops the oldest exchange.
        session.PromptFor(new string('x', 100));
        Assert.True(session.DroppedMessages >= 2);
    }
}
