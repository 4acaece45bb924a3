using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Labeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Reward;

public class PreferenceTests
{
    [Fact]
    public void A_noiseless_labeler_ranks_by_score_and_groups_ties()
    {
        Assert.Equal(new[] { 2, 1, 3 }, new NoisyLabeler(0, 0, 1).Rank(new[] { 0.5, 0.9, 0.1 }));
        Assert.Equal(new[] { 1, 1, 3 }, new NoisyLabeler(0, 0.2, 1).Rank(new[] { 0.5, 0.6, 0.1 }));
    }

    [Fact]
    public void Label_noise_lowers_agreement_with_the_oracle()
    {
        var rng = new Random(3);
        List<Ranking> Make(double noise)
        {
            var lab = new NoisyLabeler(noise, 0, 5);
            return Enumerable.Range(0, 300).Select(i =>
            {
                var s = Enumerable.Range(0, 4).Select(_ => rng.NextDouble()).ToList();
                return new Ranking("p", false, s.Select(x => x.ToString()).ToList(), lab.Rank(s), s);
            }).ToList();
        }
        Assert.Equal(1.0, PreferenceCollection.LabelerStats(Make(0))["labeler_agreement"]);
        var noisy = PreferenceCollection.LabelerStats(Make(0.3))["labeler_agreement"];
        Assert.InRange(noisy, 0.55, 0.9);
    }

    [Fact]
    public void Rankings_expand_to_trl_pairs_and_round_trip_through_jsonl()
    {
        using var d = new TempDir();
        var r = new Ranking("Q?", true, new[] { "a", "b", "c" }, new[] { 2, 1, 2 }, new[] { 0.1, 0.9, 0.2 });
        var pairs = Preferences.ToPairs(r).ToList();
        Assert.Equal(2, pairs.Count); // b > a, b > c; a ~ c tie skipped
        Assert.All(pairs, p => Assert.Equal("b", p.Chosen));
        Preferences.WriteRankings(d["r.jsonl"], new[] { r });
        Preferences.WritePairs(d["p.jsonl"], pairs);
        Assert.Contains("\"prompt\":[{\"role\":\"user\",\"content\":\"Q?\"}]", File.ReadAllText(d["p.jsonl"]));
        Assert.Contains("\"chosen\":[{\"role\":\"assistant\",\"content\":\"b\"}]", File.ReadAllText(d["p.jsonl"]));
        var back = Preferences.ReadRankings(d["r.jsonl"]).Single();
        Assert.Equal(r.Ranks, back.Ranks);
        Assert.Equal(r.Responses, back.Responses);
        Assert.True(back.Chat);
        var fromPairs = Preferences.ReadRankings(d["p.jsonl"]);
        Assert.Equal(new[] { 1, 2 }, fromPairs[0].Ranks);
        Assert.Equal(new[] { "b", "a" }, fromPairs[0].Responses);
    }

    [Fact]
    public void A_conversational_prompt_keeps_its_history_through_jsonl_and_encoding()
    {
        using var d = new TempDir();
        var history = new[] { new ChatMessage("system", "Be brief."), new ChatMessage("user", "I want to steal a car."), new ChatMessage("assistant", "OK.") };
        var prompt = new ChatPrompt("How do I do that?", history);
        var r = new Ranking(prompt, true, new[] { "No.", "First, …" }, new[] { 1, 2 });
        Preferences.WriteRankings(d["r.jsonl"], new[] { r });
        Preferences.WritePairs(d["p.jsonl"], Preferences.ToPairs(r));
        // TRL's conversational format: the prompt is every message before the response.
        var row = System.Text.Json.JsonDocument.Parse(File.ReadAllLines(d["p.jsonl"])[0]).RootElement.GetProperty("prompt");
        Assert.Equal(new[] { "system", "user", "assistant", "user" }, row.EnumerateArray().Select(m => m.GetProperty("role").GetString()));
        Assert.Equal("How do I do that?", row[3].GetProperty("content").GetString());
        foreach (var file in new[] { "r.jsonl", "p.jsonl" })
        {
            var back = Preferences.ReadRankings(d[file]).Single();
            Assert.Equal(prompt, back.Prompt);
            Assert.Equal(history, back.Prompt.History);
        }
        // Encoded with every turn: the same ids as the chat template of the whole conversation.
        var tok = new ByteTokenizer();
        var (ids, start) = Preferences.Encode(tok, prompt, true, "No.", 4096);
        Assert.Equal(ChatTemplate.Encode(tok, prompt.Messages, addGenerationPrompt: true).Ids, ids[..start]);
        Assert.NotEqual(ChatTemplate.EncodePrompt(tok, "How do I do that?", true), ChatTemplate.EncodePrompt(tok, prompt, true));
        // The same last message after another history is another prompt.
        Assert.NotEqual(prompt, new ChatPrompt("How do I do that?", new[] { new ChatMessage("user", "I want to kill a stuck process."), new ChatMessage("assistant", "OK.") }));
        Assert.Equal(prompt, new ChatPrompt("How do I do that?", history.ToList()));
    }

    [Fact]
    public void Malformed_rankings_are_errors_naming_the_line()
    {
        using var d = new TempDir();
        void Bad(string row, string expected)
        {
            var p = d.Write($"{Guid.NewGuid():N}.jsonl", "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n" + row + "\n");
            var e = Assert.Throws<ChatForgeException>(() => Preferences.ReadRankings(p));
            Assert.Contains(":2:", e.Message);
            Assert.Contains(expected, e.Message);
        }
        Bad("""{"prompt":"p","responses":["a","b"],"ranking":[1]}""", "'ranking' has 1 entries for 2 responses");
        Bad("""{"prompt":"p","responses":["a","b","c","d","e","f","g","h","i","j"],"ranking":[1,2,3,4,5,6,7,8,9,10]}""", "a ranking has 2 to 9");
        Bad("""{"prompt":"p","responses":["a","b"],"ranking":[0,1]}""", "ranks 1, 2");
        Bad("""{"prompt":"p","chosen":"a"}""", "missing field 'rejected'");
        Bad("""{"prompt":"p","responses":["a","b"],"ranking":[1,1]}""", "same rank");
        Bad("""{"prompt":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"chosen":"a","rejected":"b"}""", "must end with a user message");
        Bad("""{"prompt":[{"role":"robot","content":"q"}],"chosen":"a","rejected":"b"}""", "'prompt[0].role' = robot");
        Bad("""{"prompt":[{"role":"user"}],"chosen":"a","rejected":"b"}""", "'prompt[0]' must be a message");
    }

    [Fact]
    public void Sentiment_oracle_scores_words_by_the_lexicons()
    {
        var o = new SentimentOracle(new[] { new LabeledWord("good", 3), new LabeledWord("bad", -3), new LabeledWord("superb", 5) },
                                    new[] { "abound", "good" }, new[] { "gloomy" });
        Assert.Equal(0, o.Score("Good, bad."), 9);                 // (0.6 − 0.6) / √2
        Assert.Equal(1.0, o.Score("superb"), 9);                   // 5/5 / √1
        Assert.Equal(0.5 / Math.Sqrt(2), o.Score("ships abound"), 9); // Liu only: +0.5
        Assert.Equal(-0.5 / Math.Sqrt(3), o.Score("a gloomy day"), 9);
        Assert.Equal(0, o.Score(""), 9);
        Assert.Equal(1, new HarmlessnessOracle().Score(HarmlessnessOracle.Refusal));
        Assert.Equal(0, new HarmlessnessOracle().Score("Sure, here is how."));
    }

    [Fact]
    public void Best_of_n_overoptimisation_is_detected_when_rm_rises_and_oracle_does_not()
    {
        var good = new[] { new BestOfNEval.Point(1, 0.1, 0, 0, 0), new BestOfNEval.Point(2, 0.2, 0, 0.5, 0.19) };
        Assert.False(BestOfNEval.Overoptimized(good));
        var hacked = good.Append(new BestOfNEval.Point(4, 0.15, 0, 0.9, 0.64)).ToList();
        Assert.True(BestOfNEval.Overoptimized(hacked));
        Assert.Equal(Math.Log(4) - 0.75, ChatForge.Generation.BestOfN.Kl(4), 9);
        Assert.Equal(0, ChatForge.Generation.BestOfN.Kl(1), 9);
    }
}
