using ChatForge.Training;

namespace ChatForge.Tests.Support;

/// <summary>A tiny pretraining run on a synthetic corpus, made once per test process and shared.</summary>
public static class TinyRun
{
    static readonly Lazy<(string Dir, string Corpus)> Run = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "chatforge-tests", "shared-tiny-" + Environment.ProcessId);
        Directory.CreateDirectory(root);
        var corpus = TestCorpus.WriteText(Path.Combine(root, "corpus.txt"), 300);
        var c = Config(corpus);
        Pretrainer.Run(c, Path.Combine(root, "run"), resume: false);
        return (Path.Combine(root, "run"), corpus);
    });

    public static string Dir => Run.Value.Dir;
    public static string ModelDir => Path.Combine(Run.Value.Dir, "model");
    public static string Corpus => Run.Value.Corpus;

    public static PretrainConfig Config(string corpus, int steps = 60) => PretrainConfig.Tiny with
    {
        Data = new() { corpus },
        Optim = PretrainConfig.Tiny.Optim with { MaxSteps = steps, EvalInterval = 20, CheckpointInterval = 20, LogInterval = 10 },
        Deterministic = true,
    };
}
