using System.Text.Json;
using System.Text.RegularExpressions;
using ChatForge.Tests.Support;
using Xunit;

namespace ChatForge.Tests.Cli;

/// <summary>The command line itself: help, version, parse errors, the run options, and README's table.</summary>
public class CommandLineTests
{
    static readonly string[] TrainingVerbs = { "pretrain", "sft", "reward", "ppo", "dpo", "pipeline" };

    static void AssertOneLineUserError((int Code, string Out, string Err) r, string expected)
    {
        Assert.Equal(1, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.Err);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void A_verb_answers_help_with_its_own_options()
    {
        var r = CliRunner.Run("sft", "--help");
        Assert.Equal(0, r.Code);
        Assert.Equal("", r.Err);
        Assert.Contains("chatforge sft", r.Out);
        Assert.Contains("--lora", Options(r.Out));
        Assert.Contains("--lora-targets", Options(r.Out));
        Assert.DoesNotContain("--loss-type", Options(r.Out)); // dpo's, not sft's
    }

    [Fact]
    public void Help_lists_the_verbs_and_the_bare_command_does_too_with_exit_code_2()
    {
        var help = CliRunner.Run("--help");
        Assert.Equal(0, help.Code);
        Assert.Contains("pretrain", Commands(help.Out));
        Assert.Contains("--version", Options(help.Out));
        var bare = CliRunner.Run();
        Assert.Equal(2, bare.Code);
        Assert.Equal(Commands(help.Out), Commands(bare.Out));
    }

    [Fact]
    public void Version_prints_the_tool_version()
    {
        var r = CliRunner.Run("--version");
        Assert.Equal(0, r.Code);
        Assert.Matches(@"^\d+\.\d+\.\d+\S*\r?\n$", r.Out);
    }

    [Fact]
    public void A_mistyped_verb_is_a_one_line_error_with_a_suggestion()
    {
        AssertOneLineUserError(CliRunner.Run("pretrian", "--preset", "tiny"), "unknown verb 'pretrian' (did you mean 'pretrain'?");
        AssertOneLineUserError(CliRunner.Run("frobnicate"), "unknown verb 'frobnicate'");
    }

    [Fact]
    public void Parse_errors_are_one_line_naming_the_option_with_exit_code_1()
    {
        using var d = new TempDir();
        AssertOneLineUserError(CliRunner.Run("pretrain", "--preset", "tiny", "--out", d["r"], "--bogus"), "unknown option --bogus (known: ");
        AssertOneLineUserError(CliRunner.Run("pretrain", "--preset", "tiny", "--out", d["r"], "--bogus=3"), "unknown option --bogus (known: ");
        AssertOneLineUserError(CliRunner.Run("pretrain", "--preset", "tiny", "--out"), "--out needs a value");
        AssertOneLineUserError(CliRunner.Run("pretrain", "--preset", "tiny"), "--out is required");
        AssertOneLineUserError(CliRunner.Run("pretrain", "--out", d["r"], "--max-steps", "ten"), "--max-steps must be an integer, got 'ten'");
        AssertOneLineUserError(CliRunner.Run("generate", "--model", "m", "--prompt", "p", "--temperature", "NaN"), "--temperature must be a number, got 'NaN'");
        AssertOneLineUserError(CliRunner.Run("generate", "--model", "m", "--prompt", "p", "stray"), "unexpected argument 'stray'");
        AssertOneLineUserError(CliRunner.Run("data"), "usage: chatforge data fetch");
        Assert.False(Directory.Exists(d["r"]));
    }

    [Fact]
    public void Every_training_verb_takes_the_run_options()
    {
        foreach (var verb in TrainingVerbs)
        {
            var options = Options(CliRunner.Run(verb, "--help").Out);
            foreach (var o in new[] { "--seed", "--deterministic", "--device", "--threads", "--cache" })
                Assert.True(options.Contains(o), $"{verb} --help lacks {o}");
        }
    }

    [Fact]
    public void Run_options_reach_the_resolved_config_and_a_repeated_option_keeps_its_last_value()
    {
        using var d = new TempDir();
        var corpus = TestCorpus.WriteText(d["c.txt"], 300);
        var r = CliRunner.Run("pretrain", "--preset", "tiny", "--data", corpus, "--max-steps", "1", "--seed", "5", "--seed", "7",
                              "--deterministic", "--threads", "1", "--device", "cpu", "--cache", d["cache"], "--out", d["run"]);
        Assert.True(r.Code == 0, r.Err);
        var config = JsonDocument.Parse(File.ReadAllText(d["run/config.json"])).RootElement;
        Assert.Equal(7, config.GetProperty("seed").GetInt64());
        Assert.True(config.GetProperty("deterministic").GetBoolean());
        Assert.Equal(1, config.GetProperty("threads").GetInt32());
        Assert.Equal("cpu", config.GetProperty("device").GetString());
        Assert.Equal(d["cache"], config.GetProperty("cache").GetString());
        Assert.Equal(1, config.GetProperty("optim").GetProperty("max_steps").GetInt32());
    }

    [Fact]
    public void Readme_command_table_names_only_options_that_help_lists_and_every_verb()
    {
        Assert.Empty(ReadmeVersusHelp(File.ReadAllText(ReadmePath())));
    }

    [Fact]
    public void The_readme_check_catches_a_missing_option_and_a_missing_row()
    {
        var readme = File.ReadAllText(ReadmePath());
        var bogus = readme.Replace("`chatforge score --model DIR --text TEXT`", "`chatforge score --model DIR --text TEXT --bogus-option X`", StringComparison.Ordinal);
        Assert.NotEqual(readme, bogus);
        Assert.Contains(ReadmeVersusHelp(bogus), p => p.Contains("--bogus-option", StringComparison.Ordinal));
        var rowless = Regex.Replace(readme, @"^\| `chatforge rate .*\n", "", RegexOptions.Multiline);
        Assert.NotEqual(readme, rowless);
        Assert.Contains(ReadmeVersusHelp(rowless), p => p.Contains("'rate'", StringComparison.Ordinal));
    }

    /// <summary>What README's "## Command line" table and `--help` disagree on (empty: nothing).</summary>
    static List<string> ReadmeVersusHelp(string readme)
    {
        var start = readme.IndexOf("\n## Command line", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no '## Command line' section");
        var end = readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        var section = readme[start..(end < 0 ? readme.Length : end)];
        var rows = new Dictionary<string, HashSet<string>>();
        foreach (Match m in Regex.Matches(section, @"^\| `chatforge ([^`]*)`", RegexOptions.Multiline))
        {
            var words = m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var verb = string.Join(' ', words.TakeWhile(w => !w.StartsWith('-') && !w.StartsWith('[')));
            rows[verb] = Regex.Matches(m.Groups[1].Value, "--[a-z][a-z0-9-]*").Select(o => o.Value).ToHashSet();
        }
        var verbs = Verbs("").ToList();
        var problems = new List<string>();
        foreach (var (verb, options) in rows)
        {
            if (!verbs.Contains(verb)) { problems.Add($"README row '{verb}' is not a verb of --help"); continue; }
            var listed = Options(CliRunner.Run(verb.Split(' ').Append("--help").ToArray()).Out);
            problems.AddRange(options.Where(o => !listed.Contains(o)).Select(o => $"README's '{verb}' row names {o}, which `chatforge {verb} --help` does not list"));
        }
        problems.AddRange(verbs.Where(v => !rows.ContainsKey(v)).Select(v => $"verb '{v}' of --help has no README row"));
        return problems;
    }

    /// <summary>The verbs `--help` lists, with their subcommands (`data fetch`), leaves only.</summary>
    static IEnumerable<string> Verbs(string prefix)
    {
        var args = prefix.Split(' ', StringSplitOptions.RemoveEmptyEntries).Append("--help").ToArray();
        var help = CliRunner.Run(args);
        Assert.True(help.Code == 0, help.Err);
        foreach (var c in Commands(help.Out))
        {
            var path = (prefix + " " + c).Trim();
            var sub = Verbs(path).ToList();
            if (sub.Count == 0) yield return path;
            foreach (var s in sub) yield return s;
        }
    }

    static List<string> Commands(string help) => Section(help, "Commands:").Select(first => first.Split(' ')[0]).ToList();

    static HashSet<string> Options(string help) =>
        Section(help, "Options:").SelectMany(first => Regex.Matches(first, "--[a-z][a-z0-9-]*").Select(m => m.Value)).ToHashSet();

    /// <summary>The first column of a help section's entries.</summary>
    static IEnumerable<string> Section(string help, string title)
    {
        var lines = help.ReplaceLineEndings("\n").Split('\n');
        int i = Array.IndexOf(lines, title);
        if (i < 0) yield break;
        for (i++; i < lines.Length && lines[i].Length > 0; i++)
            if (lines[i].StartsWith("  ", StringComparison.Ordinal) && lines[i].Length > 2 && lines[i][2] != ' ')
                yield return Regex.Split(lines[i].Trim(), @"\s{2,}")[0];
    }

    static string ReadmePath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ChatForge.slnx"))) return Path.Combine(dir.FullName, "README.md");
        throw new InvalidOperationException("README.md not found above " + AppContext.BaseDirectory);
    }
}
