using System.Text.Json.Nodes;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Ppo;

/// <summary>The pretraining split, recorded by pretraining and kept to by PPO-ptx and the SFT demo's text passages.</summary>
public class PretrainSplitTests
{
    const long PretrainSeed = 99; // not the default 1337

    /// <summary>A few steps of pretraining on the demo corpora (the fixture's) with a non-default seed, and an SFT-like model on top.</summary>
    static (string Cache, string PretrainRun, string Sft) PretrainThenSft(TempDir d)
    {
        var cache = FakeCorpora.Create(d["cache"]);
        var pc = PretrainConfig.Tiny with
        {
            Cache = cache, Seed = PretrainSeed, CapitalStatements = 1, SampleTokens = 0, Deterministic = true,
            Optim = PretrainConfig.Tiny.Optim with { MaxSteps = 2, EvalInterval = 2, CheckpointInterval = 2, LogInterval = 1 },
        };
        Pretrainer.Run(pc, d["pre"], false);
        // What SFT writes: the weights, and chatforge.base_model naming the pretrained model; no split.json of its own.
        var (model, tok, _) = HfCheckpoint.Load(d["pre/model"]);
        HfCheckpoint.Write(d["sft"], model, tok, configExtra: new JsonObject { ["chatforge"] = new JsonObject { ["stage"] = "sft", ["base_model"] = d["pre/model"] } });
        return (cache, d["pre"], d["sft"]);
    }

    static List<Document> DemoDocs(string cache)
    {
        var corpora = Corpora.Open(cache);
        return TextCorpus.Load(new[] { corpora.MobyDick, corpora.Sotu });
    }

    [Fact]
    public void Pretraining_records_its_split_where_later_models_find_it()
    {
        using var d = new TempDir();
        var (cache, pre, sft) = PretrainThenSft(d);
        var docs = DemoDocs(cache);
        var (train, val) = TextCorpus.Split(docs, 0.05, PretrainSeed);
        foreach (var file in new[] { Path.Combine(pre, PretrainSplit.FileName), Path.Combine(pre, "model", PretrainSplit.FileName) })
        {
            var split = PretrainSplit.Read(file);
            Assert.Equal(PretrainSeed, split.Seed);
            Assert.Equal(val.Count, split.ValDocuments);
            Assert.Equal(train.Count, split.TrainDocuments);
            var (t2, v2) = split.Apply(docs);
            Assert.Equal(val.Select(x => x.Text), v2.Select(x => x.Text));
            Assert.Equal(train.Select(x => x.Text), t2.Select(x => x.Text));
        }
        var found = Pretrainer.FindSplit(sft);
        Assert.NotNull(found);
        Assert.Equal(Path.Combine(pre, "model", PretrainSplit.FileName), found.Value.File);
        Assert.Null(Pretrainer.FindSplit(TinyBase.Create(d["random"])));
    }

    [Fact]
    public void Ppo_ptx_trains_on_all_training_documents_of_the_pretraining_split_and_never_on_its_validation_ones()
    {
        using var d = new TempDir();
        var (cache, _, sft) = PretrainThenSft(d);
        var docs = DemoDocs(cache);
        var (pretrainTrain, pretrainVal) = TextCorpus.Split(docs, 0.05, PretrainSeed);

        var c = PpoConfig.Tiny with { Model = sft, Reward = sft, Cache = cache, PtxCoef = 1 };
        var (ptxTrain, heldOut) = PpoTrainer.PretrainDocuments(c, Corpora.Open(cache));
        Assert.Empty(ptxTrain.Select(x => x.Text).Intersect(pretrainVal.Select(x => x.Text)));
        Assert.Equal(pretrainVal.Select(x => x.Text), heldOut.Select(x => x.Text));
        Assert.Equal(pretrainTrain.Select(x => x.Text), ptxTrain.Select(x => x.Text));
    }

    [Fact]
    public void The_sft_demo_text_passages_come_from_the_pretraining_training_documents()
    {
        using var d = new TempDir();
        var (cache, _, sft) = PretrainThenSft(d);
        var (_, pretrainVal) = TextCorpus.Split(DemoDocs(cache), 0.05, PretrainSeed);
        var suite = DemoSuite.Build(Corpora.Open(cache), sentimentExamples: 10, spamExamples: 20, conversations: 20, heldOutWords: 6, heldOutEmails: 10,
                                    textExamples: 1000, split: Pretrainer.FindSplit(sft)!.Value.Split);
        var passages = suite.Train.Where(e => e.Text is not null).Select(e => e.Text!).ToList();
        Assert.NotEmpty(passages);
        foreach (var p in passages)
            Assert.DoesNotContain(pretrainVal, v => v.Text.Contains(p, StringComparison.Ordinal));
    }
}
