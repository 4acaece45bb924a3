using ChatForge.Cli.Commands;

namespace ChatForge.Cli;

/// <summary>The `chatforge` command: parse, call the library, print. Errors are one line on stderr.</summary>
public static class CliApp
{
    public const string Usage = """
        usage: chatforge <verb> [options]

          data fetch [--cache DIR] [--tarball FILE]
          tokenizer train --kind byte|bpe|gpt2 [--vocab-size N] --out DIR [--data FILE...]
          pretrain [--preset tiny|demo] [--config FILE] [--data FILE...] --out DIR [--max-steps N] [--resume]
                   [--seed S] [--deterministic] [--device auto|cpu|cuda]
          generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
          score --model DIR --text TEXT
          sft --model DIR [--data FILE...] [--lora [--lora-r R] [--lora-alpha A]] [--packing] --out DIR [--resume]
          eval --model DIR [--format auto|chat|raw] [--out FILE.json]
          chat --model DIR [--prompt TEXT] [--system TEXT]
          selfinstruct --model DIR [--seeds FILE] [--n N] --out FILE.jsonl
          preferences --model DIR [--task sentiment|capitals|harmless] [--k K] [--prompts N] [--noise S] --out FILE.jsonl [--pairs FILE.jsonl]
          reward --sft DIR [--data FILE...] --out DIR [--resume]
          rate --model RM --prompt TEXT --response TEXT [--chat]
          bon --policy DIR --reward RM --n N [--prompt TEXT | --out DIR]
          ppo --sft DIR --reward RM [--prompts FILE...] --out DIR [--iterations N] [--beta B] [--adaptive-kl TARGET]
              [--ptx-coef G] [--rounds R] [--resume]
          pipeline [--preset tiny|demo] [--config FILE] [--out DIR] [--from STAGE]
          dpo --sft DIR [--data FILE...] --out DIR [--beta B] [--loss-type sigmoid|ipo] [--label-smoothing E] [--resume]
          bench [--out FILE.json]

        Add --verbose to any verb for stack traces on errors.
        """;

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null, TextReader? stdin = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var ui = new Ui(stdout, stderr);
        bool verbose = args.Contains("--verbose");
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help") { stdout.WriteLine(Usage); return args.Length == 0 ? 2 : 0; }
            var rest = args[1..];
            return args[0] switch
            {
                "data" => DataCommand.Run(rest, ui),
                "tokenizer" => TokenizerCommand.Run(rest, ui),
                "pretrain" => PretrainCommand.Run(rest, ui),
                "generate" => GenerateCommand.Run(rest, ui),
                "score" => ScoreCommand.Run(rest, ui),
                "bench" => BenchCommand.Run(rest, ui),
                "sft" => SftCommand.Run(rest, ui),
                "eval" => EvalCommand.Run(rest, ui),
                "chat" => ChatCommand.Run(rest, ui, stdin ?? Console.In),
                "selfinstruct" => SelfInstructCommand.Run(rest, ui),
                "preferences" => PreferencesCommand.Run(rest, ui),
                "reward" => RewardCommand.Run(rest, ui),
                "rate" => RateCommand.Run(rest, ui),
                "bon" => BonCommand.Run(rest, ui),
                "ppo" => PpoCommand.Run(rest, ui),
                "dpo" => DpoCommand.Run(rest, ui),
                "pipeline" => PipelineCommand.Run(rest, ui),
                _ => throw new ChatForgeException($"unknown verb '{args[0]}' (run `chatforge --help`)"),
            };
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

    static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
