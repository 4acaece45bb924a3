using System.CommandLine;
using ChatForge.Data;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Commands;

public static class TokenizerCommand
{
    public static Command Create(Ui ui)
    {
        var kind = Opt.Text("--kind", "byte (one id per byte), bpe (trained on --data) or gpt2 (GPT-2's vocabulary)", "byte|bpe|gpt2", required: true);
        var vocabSize = Opt.Int("--vocab-size", "ids of a trained BPE, special tokens included (default 2048)");
        var outDir = Opt.Out("the tokenizer directory");
        var data = Opt.List("--data", "training text for bpe (default: the demo corpora)");
        var cache = Opt.Cache();
        var seed = Opt.Long("--seed", "seed of the train/validation split (default: pretraining's)", "S");
        var train = new Command("train", "train a byte-level BPE (or write the byte / GPT-2 tokenizer)") { kind, vocabSize, outDir, data, cache, seed };
        train.SetAction(r =>
        {
            var k = r.GetValue(kind)!;
            var dir = r.GetValue(outDir)!;
            ITokenizer tok;
            if (k == "bpe")
            {
                var paths = r.GetValue(data) is { Count: > 0 } d ? d : Pretrainer.DemoCorpus(r.GetValue(cache));
                var docs = TextCorpus.Load(paths);
                // Train on the training split only, so validation text stays unseen (same split as pretrain with this seed).
                var (trainDocs, _) = TextCorpus.Split(docs, new PretrainConfig().ValFraction, r.GetValue(seed) ?? new PretrainConfig().Seed);
                int vocab = r.GetValue(vocabSize) ?? 2048;
                ui.Log($"training a {vocab}-id byte-level BPE on {trainDocs.Count} documents");
                tok = BpeTrainer.Train(trainDocs.Select(d => d.Text), vocab, dir);
            }
            else
            {
                if (r.GetValue(vocabSize) is not null) throw new ChatForgeException($"--vocab-size applies to --kind bpe only");
                tok = TokenizerFiles.Create(k);
                tok.Save(dir);
            }
            ui.Log($"{tok.Kind} tokenizer, {tok.VocabSize} ids, saved to {dir}");
            ui.Out.WriteLine(Path.GetFullPath(dir));
            return 0;
        });
        return new Command("tokenizer", "tokenizers") { train };
    }
}
