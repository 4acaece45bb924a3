using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Reflection;
using ChatForge.Cli.Commands;

namespace ChatForge.Cli;

/// <summary>The `chatforge` command: parse, call the library, print. Errors are one line on stderr.</summary>
public static class CliApp
{
    /// <summary>Every verb, with its options: what parses the command line is what `--help` shows.</summary>
    public static Command Create(Ui ui, TextReader stdin)
    {
        // A plain Command, not a RootCommand: that one takes its name from the executable (ChatForge.Cli, or the test host).
        var root = new Command("chatforge", "ChatForge: train and align GPT-style language models (pretrain, SFT, reward model, PPO, DPO, best-of-N).")
        {
            new HelpOption(),
            new VersionOption { Action = new VersionAction() },
            new Option<bool>("--verbose") { Description = "stack traces on errors", Recursive = true, Arity = ArgumentArity.Zero },
            DataCommand.Create(ui),
            TokenizerCommand.Create(ui),
            PretrainCommand.Create(ui),
            GenerateCommand.Create(ui),
            ScoreCommand.Create(ui),
            SftCommand.Create(ui),
            EvalCommand.Create(ui),
            ChatCommand.Create(ui, stdin),
            SelfInstructCommand.Create(ui),
            PreferencesCommand.Create(ui),
            RewardCommand.Create(ui),
            RateCommand.Create(ui),
            BonCommand.Create(ui),
            PpoCommand.Create(ui),
            DpoCommand.Create(ui),
            PipelineCommand.Create(ui),
            ServeCommand.Create(ui),
            BenchCommand.Create(ui),
        };
        // `chatforge` alone: the verbs, and exit code 2.
        root.SetAction(r => { new HelpAction().Invoke(r); return 2; });
        return root;
    }

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null, TextReader? stdin = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var ui = new Ui(stdout, stderr);
        bool verbose = args.Contains("--verbose");
        try
        {
            if (args is ["help"]) args = ["--help"];
            // No response files: an argument such as `--prompt @user` is text, not a file to read.
            var result = Create(ui, stdin ?? Console.In).Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
            if (result.Action is ParseErrorAction) throw new ChatForgeException(ParseError(result));
            return result.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (ChatForgeException e)
        {
            stderr.WriteLine($"error: {OneLine(e.Message)}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"error: {e.GetType().Name}: {OneLine(e.Message)}");
            if (verbose) stderr.WriteLine(e);
            return 2;
        }
    }

    /// <summary>The first thing wrong with the command line, in one line: the leftmost unknown token, a bad or missing value, a missing option.</summary>
    static string ParseError(ParseResult r)
    {
        var command = r.CommandResult.Command;
        if (r.UnmatchedTokens.Count > 0)
        {
            var token = r.UnmatchedTokens[0];
            if (r.CommandResult.Parent is null)
                return $"unknown verb '{token}' ({(Suggest(token, command.Subcommands.Select(c => c.Name)) is { } s ? $"did you mean '{s}'? " : "")}run `chatforge --help`)";
            if (command.Subcommands.Count > 0) return GroupUsage(command);
            if (token.StartsWith("--", StringComparison.Ordinal))
            {
                var known = command.Options.Concat(r.RootCommandResult.Command.Options.Where(o => o.Recursive)).Select(o => o.Name).Distinct().Order(StringComparer.Ordinal);
                return $"unknown option {token.Split('=')[0]} (known: {string.Join(", ", known)})";
            }
            return $"unexpected argument '{token}'";
        }
        foreach (var e in r.Errors)
            if ((e.SymbolResult as OptionResult ?? e.SymbolResult?.Parent as OptionResult) is { } option)
                return option.IdentifierToken is null ? $"{option.Option.Name} is required"
                    : option.Tokens.Count == 0 ? $"{option.Option.Name} needs a value"
                    : e.Message; // a malformed value, in the words of Opt's parsers
        if (command.Subcommands.Count > 0) return GroupUsage(command);
        return r.Errors[0].Message;
    }

    static string GroupUsage(Command group) => "usage: " + string.Join(" | ", group.Subcommands.Select(c => Synopsis(c, $"chatforge {group.Name} ")));

    /// <summary>`chatforge VERB --required VALUE [--optional VALUE] [--flag]`, from the verb's definition.</summary>
    static string Synopsis(Command verb, string prefix) => prefix + verb.Name + string.Concat(verb.Options.Where(o => !o.Hidden).Select(o =>
    {
        var usage = o.Arity.MaximumNumberOfValues == 0 ? o.Name : $"{o.Name} {o.HelpName}";
        return o.Required ? $" {usage}" : $" [{usage}]";
    }));

    /// <summary>The closest name within 3 edits (ties: the longer common prefix), or null.</summary>
    static string? Suggest(string token, IEnumerable<string> names) => names
        .Select(n => (n, d: Distance(token, n)))
        .Where(x => x.d <= 3)
        .OrderBy(x => x.d).ThenByDescending(x => x.n.Zip(token).TakeWhile(p => p.First == p.Second).Count())
        .Select(x => x.n).FirstOrDefault();

    static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int next = Math.Min(Math.Min(row[j], row[j - 1]) + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = row[j];
                row[j] = next;
            }
        }
        return row[b.Length];
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    /// <summary>This tool's version (the library's default reports the process's entry assembly: the test host under tests).</summary>
    sealed class VersionAction : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            var assembly = typeof(CliApp).Assembly;
            parseResult.InvocationConfiguration.Output.WriteLine(
                assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? assembly.GetName().Version?.ToString());
            return 0;
        }
    }
}
