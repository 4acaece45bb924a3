using System.Text;
using System.Text.Json.Nodes;
using ChatForge.Data;

namespace ChatForge.Tests.Support;

/// <summary>A small data cache in the layout `chatforge data fetch` writes, for tests without network.</summary>
public static class FakeCorpora
{
    public static readonly (string State, string Capital)[] States =
    {
        ("Alabama", "Montgomery"), ("Alaska", "Juneau"), ("Arizona", "Phoenix"), ("Arkansas", "Little Rock"), ("California", "Sacramento"),
        ("Colorado", "Denver"), ("Connecticut", "Hartford"), ("Delaware", "Dover"), ("Florida", "Tallahassee"), ("Georgia", "Atlanta"),
        ("Hawaii", "Honolulu"), ("Idaho", "Boise"), ("Illinois", "Springfield"), ("Indiana", "Indianapolis"), ("Iowa", "Des Moines"),
        ("Kansas", "Topeka"), ("Kentucky", "Frankfort"), ("Louisiana", "Baton Rouge"), ("Maine", "Augusta"), ("Maryland", "Annapolis"),
        ("Ohio", "Columbus"), ("Texas", "Austin"), ("Utah", "Salt Lake City"), ("Vermont", "Montpelier"),
    };

    static readonly string[] Positive = { "good", "great", "superb", "happy", "love", "nice", "wonderful", "excellent", "joy", "best", "brilliant", "kind" };
    static readonly string[] Negative = { "bad", "awful", "sad", "hate", "terrible", "worst", "ugly", "angry", "poor", "evil", "cruel", "nasty" };

    /// <summary>Creates the cache under <paramref name="cache"/> and returns it (pass it as cache).</summary>
    public static string Create(string cache)
    {
        var root = Path.Combine(cache, Corpora.DirName);
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "us-states-capitals.csv"), "state,capital\n" + string.Join('\n', States.Select(s => $"{s.State},{s.Capital}")) + "\n");
        File.WriteAllText(Path.Combine(root, "afinn-111.csv"), "word,valence\n" +
            string.Join('\n', Positive.Select((w, i) => $"{w},{1 + i % 4}").Concat(Negative.Select((w, i) => $"{w},{-1 - i % 4}"))) + "\n");
        File.WriteAllText(Path.Combine(root, "liu-positive-words.txt"), string.Join('\n', Positive) + "\n");
        File.WriteAllText(Path.Combine(root, "liu-negative-words.txt"), string.Join('\n', Negative) + "\n");
        var spam = new StringBuilder();
        for (int i = 0; i < 60; i++)
        {
            bool isSpam = i % 2 == 0;
            var text = isSpam
                ? $"From: promo{i}@deals.example\nSubject: WIN MONEY NOW {i}\n\nClick here for free money and a prize {i}!\nLimited offer.\n"
                : $"From: friend{i}@mail.example\nSubject: meeting notes {i}\n\nHi, the meeting moved to Tuesday {i}.\nSee you there.\n";
            spam.Append(new JsonObject { ["text"] = text, ["label"] = isSpam ? "spam" : "ham", ["group"] = isSpam ? "spam-1" : "easy-ham-1", ["id"] = $"g/{i:D5}" }.ToJsonString()).Append('\n');
        }
        File.WriteAllText(Path.Combine(root, "spam-assassin.jsonl"), spam.ToString());
        var text1 = File.ReadAllText(TestCorpus.WriteText(Path.Combine(cache, "a.txt"), 150, 1));
        var text2 = File.ReadAllText(TestCorpus.WriteText(Path.Combine(cache, "b.txt"), 150, 2));
        File.WriteAllText(Path.Combine(root, "moby-dick.jsonl"), string.Join('\n', TextCorpus.Blocks(text1, 2000).Select(b => new JsonObject { ["text"] = b }.ToJsonString())) + "\n");
        File.WriteAllText(Path.Combine(root, "sotu.jsonl"), string.Join('\n', TextCorpus.Blocks(text2, 2000).Select(b => new JsonObject { ["text"] = b }.ToJsonString())) + "\n");
        File.WriteAllText(Path.Combine(root, "MANIFEST.json"), "{\"package\":\"test fixture\"}");
        return cache;
    }
}
