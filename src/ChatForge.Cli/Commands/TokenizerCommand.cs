using ChatForge.Data;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class TokenizerCommand
{
    public static int Run(string[] args, Ui ui)
    {
        if (args.Length == 0 || args[0] != "train")
            throw new ChatForgeException("usage: chatforge tokenizer train --kind byte|bpe|gpt2 [--vocab-size N] --out DIR [--data FILE...]");
        var a = new Args(args[1..], new[] { "kind", "vocab-size", "out", "cache", "seed" }, multi: new[] { "data" });
        var kind = a.Require("kind");
        var outDir = a.Require("out");
        ITokenizer tok;
        if (kind == "bpe")
        {
            var paths = a.All("data").Count > 0 ? a.All("data") : Pretrainer.DemoCorpus(a.Get("cache"));
            var docs = TextCorpus.Load(paths);
            // Train on the training split only, so validation text stays unseen (same split as pretrain with this seed).
            var (train, _) = TextCorpus.Split(docs, new PretrainConfig().ValFraction, a.Long("seed") ?? new PretrainConfig().Seed);
            int vocab = a.Int("vocab-size") ?? 2048;
            ui.Log($"training a {vocab}-id byte-level BPE on {train.Count} documents");
            tok = BpeTrainer.Train(train.Select(d => d.Text), vocab, outDir);
        }
        else
        {
            if (a.Get("vocab-size") is not null) throw new ChatForgeException($"--vocab-size applies to --kind bpe only");
            tok = TokenizerFiles.Create(kind);
            tok.Save(outDir);
        }
        ui.Log($"{tok.Kind} tokenizer, {tok.VocabSize} ids, saved to {outDir}");
        ui.Out.WriteLine(Path.GetFullPath(outDir));
        return 0;
    }
}
