using ChatForge.Data;
using ChatForge.Labeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Sft;

public class SftDataTests
{
    static readonly ByteTokenizer Tok = new();

    [Fact]
    public void Chat_template_renders_chatml_and_trains_only_on_the_assistant()
    {
        var msgs = new[] { new ChatMessage("user", "Hi"), new ChatMessage("assistant", "Yo") };
        var (ids, train) = ChatTemplate.Encode(Tok, msgs, addGenerationPrompt: false);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n", Tok.Decode(ids));
        Assert.Equal(ChatTemplate.Render(msgs, false), Tok.Decode(ids));
        // Trained: "Yo" and the assistant's <|im_end|>; nothing else.
        var trained = ids.Where((_, i) => train[i]).ToArray();
        Assert.Equal(new[] { (int)'Y', (int)'o', Tok.Id(SpecialTokens.ImEnd) }, trained);
        var (gp, _) = ChatTemplate.Encode(Tok, msgs.Take(1).ToList(), addGenerationPrompt: true);
        Assert.EndsWith("<|im_start|>assistant\n", Tok.Decode(gp));
    }

    [Fact]
    public void Long_prompts_are_cut_from_the_left_and_answers_are_kept()
    {
        var ex = SftExample.PromptCompletion(new string('p', 100) + "END", "The answer.");
        var e = SftData.Encode(Tok, ex, 64);
        Assert.Equal(64, e.Ids.Length);
        Assert.True(e.PromptTruncated);
        Assert.False(e.AnswerTruncated);
        var text = Tok.Decode(e.Ids);
        Assert.EndsWith("END<|im_end|>\n<|im_start|>assistant\nThe answer.<|im_end|>\n", text);
        Assert.Equal("The answer.<|im_end|>", Tok.Decode(e.Ids.Where((_, i) => e.Train[i])));
    }

    [Fact]
    public void Answers_longer_than_the_context_are_cut_on_the_right_and_counted()
    {
        var ex = SftExample.PromptCompletion("Q", new string('a', 200));
        var e = SftData.Encode(Tok, ex, 64);
        Assert.Equal(64, e.Ids.Length);
        Assert.True(e.AnswerTruncated);
        Assert.StartsWith("<|im_start|>assistant\naaaa", Tok.Decode(e.Ids));
    }

    [Fact]
    public void Loads_trl_formats_and_names_file_and_line_on_errors()
    {
        using var d = new TempDir();
        var ok = d.Write("ok.jsonl", """
            {"prompt": "Q1", "completion": "A1"}
            {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}
            {"text": "plain"}
            """);
        var all = SftData.Load(ok);
        Assert.Equal(3, all.Count);
        Assert.Equal("assistant", all[0].Messages![1].Role);
        Assert.Equal("S", all[1].Messages![0].Content);
        Assert.Equal("plain", all[2].Text);
        void Bad(string content, string expected)
        {
            var p = d.Write($"bad{Guid.NewGuid():N}.jsonl", "{\"prompt\":\"a\",\"completion\":\"b\"}\n" + content + "\n");
            var e = Assert.Throws<ChatForgeException>(() => SftData.Load(p));
            Assert.Contains(":2:", e.Message);
            Assert.Contains(expected, e.Message);
        }
        Bad("""{"messages": [{"role": "robot", "content": "x"}]}""", "unknown role 'robot'");
        Bad("""{"messages": [{"role": "user", "content": "x"}]}""", "the last message must be the assistant's");
        Bad("""{"prompt": "only"}""", "missing field 'completion'");
        Bad("""{"question": "?"}""", "expected 'messages'");
        Bad("""{"prompt": 3, "completion": "x"}""", "must be a string");
    }

    [Fact]
    public void Collate_shifts_targets_and_masks_everything_but_the_answer()
    {
        var e = SftData.Encode(Tok, SftExample.PromptCompletion("Q", "A"), 128);
        var b = CausalBatch.Build(new[] { new PackedRow(new[] { e }) }, Tok.EosId(), CPU);
        var x = b.Input.data<long>().ToArray();
        var y = b.Targets.data<long>().ToArray();
        Assert.Equal(e.Ids.Length - 1, x.Length);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(e.Ids[i], x[i]);
            Assert.Equal(e.Train[i + 1] ? e.Ids[i + 1] : CausalBatch.IgnoreIndex, y[i]);
        }
        Assert.Equal(2, y.Count(v => v != CausalBatch.IgnoreIndex)); // "A" and <|im_end|>
    }

    [Fact]
    public void Packed_rows_give_each_example_the_logits_it_gets_alone()
    {
        manual_seed(1);
        var m = new ChatForge.Modeling.Gpt(TinyBase.Config); m.eval();
        var e1 = SftData.Encode(Tok, SftExample.PromptCompletion("Q one", "Answer one."), 128);
        var e2 = SftData.Encode(Tok, SftExample.PromptCompletion("Second", "Two."), 128);
        var packed = CausalBatch.Build(new[] { new PackedRow(new[] { e1, e2 }) }, Tok.EosId(), CPU);
        using var _ = no_grad();
        var lp = m.Logits(m.Hidden(packed.Input, packed.Positions, packed.Mask));
        foreach (var (e, off) in new[] { (e1, 0), (e2, e1.Ids.Length) })
        {
            var alone = CausalBatch.Build(new[] { new PackedRow(new[] { e }) }, Tok.EosId(), CPU);
            var la = m.Logits(m.Hidden(alone.Input));
            int n = (int)alone.Input.shape[1];
            Assert.True(la.allclose(lp.narrow(1, off, n), 1e-4, 1e-5), $"segment at {off}");
        }
        var rows = CausalBatch.Pack(new[] { e1, e2, e1 }, e1.Ids.Length + e2.Ids.Length);
        Assert.Equal(2, rows.Count);
    }

    [Fact]
    public void Rouge_l_is_the_lcs_f_measure()
    {
        // LCS("the cat sat on the mat", "the cat on the mat") = 5 words: P = 5/6, R = 5/5, F = 10/11.
        Assert.Equal(10.0 / 11, SelfInstruct.RougeL(SelfInstruct.Words("the cat sat on the mat"), SelfInstruct.Words("the cat on the mat")), 9);
        Assert.Equal(0, SelfInstruct.RougeL(SelfInstruct.Words("a b"), SelfInstruct.Words("c d")));
        Assert.Equal(1, SelfInstruct.RougeL(SelfInstruct.Words("Same words."), SelfInstruct.Words("same words")));
    }

    [Fact]
    public void Demo_suite_holds_states_out_of_the_instruction_data()
    {
        using var d = new TempDir();
        var suite = DemoSuite.Build(Corpora.Open(FakeCorpora.Create(d.Path)), sentimentExamples: 10, spamExamples: 20, conversations: 20, heldOutWords: 6, heldOutEmails: 10);
        Assert.Equal(DemoSuite.HeldOutStateCount, suite.HeldOutStates.Count);
        var text = string.Join("\n", suite.Train.Concat(suite.Validation).Where(e => e.Messages is not null).SelectMany(e => e.Messages!).Select(m => m.Content));
        foreach (var s in suite.HeldOutStates)
            Assert.DoesNotContain(s.State, text);
        foreach (var w in suite.HeldOutWords) Assert.DoesNotContain($"'{w.Word}'", text);
        Assert.Contains(suite.Train, e => e.Messages?.Count == 4); // multi-turn conversations
        Assert.Contains(suite.Train, e => e.Text is not null);      // plain-text passages keep the model continuing text
        Assert.DoesNotContain(suite.Validation, e => e.Text is not null);
        Assert.Contains("What is its capital?", text.Replace("What about its capital?", "What is its capital?", StringComparison.Ordinal));
        // The pretraining statements cover every state, held-out ones included.
        var statements = PretrainKnowledge.CapitalFacts(suite.States, 1, 0).Text;
        foreach (var s in suite.States) Assert.Contains(s.Capital, statements);
    }

    [Fact]
    public void Answer_checks_accept_the_right_answer_only()
    {
        var states = FakeCorpora.States.Select(s => new StateCapital(s.State, s.Capital)).ToList();
        var texas = states.Single(s => s.State == "Texas");
        Assert.True(DemoTasks.CapitalCorrect("The capital of Texas is Austin.", texas, states));
        Assert.False(DemoTasks.CapitalCorrect("The capital of Texas is Dover.", texas, states));
        Assert.False(DemoTasks.CapitalCorrect("Austin or Denver.", texas, states));
        Assert.True(DemoTasks.ParseSpam("Spam.") == true);
        Assert.True(DemoTasks.ParseSpam("Not spam.") == false);
        Assert.Null(DemoTasks.ParseSpam("Hello"));
        Assert.True(DemoTasks.ParseSentiment("Positive.") == true);
        Assert.True(DemoTasks.ParseSentiment("it is negative, not positive") == false);
        Assert.True(DemoTasks.ParseSentiment("The word 'negative' is positive.") == true);
        Assert.True(DemoTasks.ParseSentiment("The word 'positive' is negative.") == false);
        Assert.True(DemoTasks.ParseSentiment(DemoTasks.SentimentAnswer(new LabeledWord("superb", 5))) == true);
    }
}
