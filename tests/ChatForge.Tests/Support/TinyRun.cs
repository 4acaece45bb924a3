using ChatForge.Training;

namespace ChatForge.Tests.Support;

/// <summary>A tiny pretraining run on a synthetic corpus, made once per test process and family, and shared.</summary>
public static class TinyRun
{
    static readonly Lazy<string> Root = new(() =>
    {
        var root = Path.Combine(Path.GetTempPath(), "chatforge-tests", "shared-tiny-" + Environment.ProcessId);
        Directory.CreateDirectory(root);
        TestCorpus.WriteText(Path.Combine(root, "corpus.txt"), 300);
        return root;
    });

    static readonly Dictionary<string, Lazy<string>> Runs = new()
    {
        ["gpt2"] = new(() => Pretrain("gpt2")),
        ["llama"] = new(() => Pretrain("llama")),
    };

    static string Pretrain(string architecture)
    {
        var c = Config(Corpus);
        c = c with { Model = c.Model with { Architecture = architecture, NHead = architecture == "llama" ? 4 : c.Model.NHead, NKvHead = architecture == "llama" ? 2 : null } };
        var dir = Path.Combine(Root.Value, "run-" + architecture);
        Pretrainer.Run(c, dir, resume: false);
        return dir;
    }

    public static string Dir => DirFor("gpt2");
    public static string ModelDir => ModelDirFor("gpt2");
    public static string DirFor(string architecture) => Runs[architecture].Value;
    public static string ModelDirFor(string architecture) => Path.Combine(Runs[architecture].Value, "model");
    public static string Corpus => Path.Combine(Root.Value, "corpus.txt");

    public static PretrainConfig Config(string corpus, int steps = 60) => PretrainConfig.Tiny with
    {
        Data = new() { corpus },
        Optim = PretrainConfig.Tiny.Optim with { MaxSteps = steps, EvalInterval = 20, CheckpointInterval = 20, LogInterval = 10 },
        Deterministic = true,
    };
}
