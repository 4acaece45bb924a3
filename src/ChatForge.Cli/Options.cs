using System.CommandLine;
using ChatForge.Generation;
using System.CommandLine.Parsing;
using System.Globalization;
using ChatForge.Labeling;
using ChatForge.Training;
using ChatForge.Util;

namespace ChatForge.Cli;

/// <summary>
/// Option definitions: `--name value` or `--name=value` (given twice, the last one wins), `--name v1 v2 …`
/// for lists, `--flag`. A malformed value is a parse error in ChatForge's words, naming the option.
/// </summary>
public static class Opt
{
    public static Option<string?> Text(string name, string description, string valueName, bool required = false)
    {
        var o = Single<string?>(name, description, valueName, (s, _) => s);
        o.Required = required;
        return o;
    }

    public static Option<int?> Int(string name, string description, string valueName = "N") =>
        Single<int?>(name, description, valueName, (s, r) =>
            int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : Error<int?>(r, $"{name} must be an integer, got '{s}'"));

    public static Option<long?> Long(string name, string description, string valueName = "N") =>
        Single<long?>(name, description, valueName, (s, r) =>
            long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : Error<long?>(r, $"{name} must be an integer, got '{s}'"));

    public static Option<double?> Number(string name, string description, string valueName = "X") =>
        Single<double?>(name, description, valueName, (s, r) =>
            double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : Error<double?>(r, $"{name} must be a number, got '{s}'"));

    /// <summary>`--name a b c` or `--name a --name b`: every value, in order.</summary>
    public static Option<List<string>> List(string name, string description, string valueName = "FILE") => new(name)
    {
        Description = description, HelpName = valueName + "...", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = true,
    };

    public static Option<bool> Flag(string name, string description) => new(name) { Description = description, Arity = ArgumentArity.Zero };

    public static Option<string?> Device() => Text("--device", "auto (CUDA when available), cpu, cuda or cuda:N", "auto|cpu|cuda");
    public static Option<string?> Cache() => Text("--cache", "data cache of the demo corpora (default: the user's cache)", "DIR");
    public static Option<string?> Preset() => Text("--preset", "the base config: tiny (seconds, for tests) or demo (the default)", "tiny|demo");
    public static Option<string?> Config() => Text("--config", "a JSON config overlaid on the preset (unknown keys are errors)", "FILE");
    public static Option<string?> Out(string what = "the run directory", string valueName = "DIR") => Text("--out", what, valueName, required: true);
    public static Option<bool> Resume() => Flag("--resume", "continue from the checkpoint in --out");
    public static Option<int?> MaxSteps() => Int("--max-steps", "optimizer steps (overrides the config)");

    // One value per occurrence; a repeated option keeps its last value (as `--name v --name w` always did).
    static Option<T> Single<T>(string name, string description, string valueName, Func<string, ArgumentResult, T> parse) => new(name)
    {
        Description = description, HelpName = valueName, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false,
        CustomParser = r => r.Tokens.Count == 0 ? default : parse(r.Tokens[^1].Value, r),
    };

    static T Error<T>(ArgumentResult r, string message)
    {
        r.AddError(message);
        return default!;
    }
}

/// <summary>
/// The run options every training verb takes (<see cref="RunOptions"/>: `--seed`, `--deterministic`,
/// `--device`, `--threads`, `--cache`), defined once and applied to a config once.
/// </summary>
/// <summary>`--max-new-tokens`, `--temperature`, `--top-k`, `--top-p`, `--seed` with a verb's own defaults, read into <see cref="SamplingOptions"/>.</summary>
public sealed class SamplingOptionSet
{
    readonly SamplingOptions _defaults;
    readonly Option<int?> _maxNewTokens;
    readonly Option<double?> _temperature, _topP;
    readonly Option<int?> _topK;
    readonly Option<long?> _seed = Opt.Long("--seed", "sampling seed", "S");

    public SamplingOptionSet(Command verb, SamplingOptions defaults, string tokensWhat)
    {
        _defaults = defaults;
        string Invariant(double v) => v.ToString(CultureInfo.InvariantCulture);
        _maxNewTokens = Opt.Int("--max-new-tokens", $"{tokensWhat} (default {defaults.MaxNewTokens})");
        _temperature = Opt.Number("--temperature", $"sampling temperature; 0 is greedy (default {Invariant(defaults.Temperature)})", "T");
        _topK = Opt.Int("--top-k", $"sample among the K likeliest tokens (0: all; default {defaults.TopK})", "K");
        _topP = Opt.Number("--top-p", $"nucleus sampling: the smallest set of tokens with probability ≥ P (default {Invariant(defaults.TopP)})", "P");
        foreach (var o in new Option[] { _maxNewTokens, _temperature, _topK, _topP, _seed }) verb.Add(o);
    }

    /// <summary>The sampling options given on the command line, the verb's defaults for the others; validated.</summary>
    public SamplingOptions Read(ParseResult r)
    {
        var o = _defaults with
        {
            MaxNewTokens = r.GetValue(_maxNewTokens) ?? _defaults.MaxNewTokens,
            Temperature = r.GetValue(_temperature) ?? _defaults.Temperature,
            TopK = r.GetValue(_topK) ?? _defaults.TopK,
            TopP = r.GetValue(_topP) ?? _defaults.TopP,
            Seed = r.GetValue(_seed) ?? _defaults.Seed,
        };
        o.Validate();
        return o;
    }
}

public sealed class RunOptionSet
{
    public Option<long?> Seed { get; } = Opt.Long("--seed", "seed of weights, data order, dropout and sampling", "S");
    public Option<bool> Deterministic { get; } = Opt.Flag("--deterministic", "bit-identical runs (one intra-op thread)");
    public Option<string?> Device { get; } = Opt.Device();
    public Option<int?> Threads { get; } = Opt.Int("--threads", "intra-op threads (default: one per core)");
    public Option<string?> Cache { get; } = Opt.Cache();

    public RunOptionSet(Command verb)
    {
        verb.Add(Seed);
        verb.Add(Deterministic);
        verb.Add(Device);
        verb.Add(Threads);
        verb.Add(Cache);
    }

    /// <summary>The config with the run options given on the command line (the others as the config has them).</summary>
    public T Apply<T>(T c, ParseResult r) where T : RunOptions => (T)((RunOptions)c with
    {
        Seed = r.GetValue(Seed) ?? c.Seed,
        Deterministic = c.Deterministic || r.GetValue(Deterministic),
        Device = r.GetValue(Device) ?? c.Device,
        Threads = r.GetValue(Threads) ?? c.Threads,
        Cache = r.GetValue(Cache) ?? c.Cache,
    });
}

/// <summary>How preference rankings are collected (<see cref="CollectConfig"/>): `--task`, `--k`, `--prompts`, `--noise`, and for labeling runs `--tie-margin`, `--max-new-tokens`.</summary>
public sealed class CollectOptionSet
{
    readonly Option<string?> _task = Opt.Text("--task", "what the labeler ranks: sentiment, capitals, harmless or hhh (the helpful–honest–harmless mixture)", "sentiment|capitals|harmless|hhh");
    readonly Option<int?> _k = Opt.Int("--k", "responses per prompt (2–9)", "K");
    readonly Option<int?> _prompts = Opt.Int("--prompts", "prompts to rank responses for");
    readonly Option<double?> _noise = Opt.Number("--noise", "standard deviation of the labeler's noise", "S");
    readonly Option<double?>? _tieMargin;
    readonly Option<int?>? _maxNewTokens;

    public CollectOptionSet(Command verb, bool sampling = true)
    {
        verb.Add(_task);
        verb.Add(_k);
        verb.Add(_prompts);
        verb.Add(_noise);
        if (!sampling) return;
        verb.Add(_tieMargin = Opt.Number("--tie-margin", "perceived scores closer than this are ties", "M"));
        verb.Add(_maxNewTokens = Opt.Int("--max-new-tokens", "tokens per sampled response"));
    }

    public CollectConfig Apply(CollectConfig c, ParseResult r, long? seed = null) => c with
    {
        Task = r.GetValue(_task) ?? c.Task,
        K = r.GetValue(_k) ?? c.K,
        Prompts = r.GetValue(_prompts) ?? c.Prompts,
        NoiseStd = r.GetValue(_noise) ?? c.NoiseStd,
        TieMargin = (_tieMargin is null ? null : r.GetValue(_tieMargin)) ?? c.TieMargin,
        MaxNewTokens = (_maxNewTokens is null ? null : r.GetValue(_maxNewTokens)) ?? c.MaxNewTokens,
        Seed = seed ?? c.Seed,
    };
}
