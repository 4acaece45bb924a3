using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Labeling;
using ChatForge.Modeling;
using ChatForge.Tests.Support;
using ChatForge.Tokenization;
using ChatForge.Training;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Sft;

public class SftTrainerTests
{
    static string Data(TempDir d)
    {
        var ex = new List<SftExample>();
        foreach (var (s, c) in FakeCorpora.States)
        {
            ex.Add(SftExample.PromptCompletion($"What is the capital of {s}?", $"The capital of {s} is {c}."));
            ex.Add(SftExample.Chat(new ChatMessage("user", $"Let's talk about {s}."), new ChatMessage("assistant", $"Sure, {s}."),
                                   new ChatMessage("user", "What is its capital?"), new ChatMessage("assistant", $"The capital of {s} is {c}.")));
        }
        var path = d["sft.jsonl"];
        SftData.Write(path, ex);
        return path;
    }

    static SftConfig Config(string baseDir, string data, int steps = 12) => SftConfig.Tiny with
    {
        Model = baseDir, Data = new() { data }, Deterministic = true,
        Optim = SftConfig.Tiny.Optim with { MaxSteps = steps, EvalInterval = 6, CheckpointInterval = 6, LogInterval = 1 },
    };

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Full_fine_tuning_changes_every_parameter_and_lowers_the_response_loss(string family)
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"], family: family);
        var summary = SftTrainer.Run(Config(baseDir, Data(d), 30), d["run"], false);
        var (before, _, _) = HfCheckpoint.Load(baseDir);
        var (after, _, _) = HfCheckpoint.Load(d["run/model"]);
        var a = after.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in before.named_parameters())
            Assert.False(p.equal(a[name]).all().item<bool>(), $"{name} did not change");
        var metrics = MetricsLog.Read(d["run/metrics.jsonl"]);
        Assert.True(metrics[^1]["val_loss"] < metrics.First(m => m.ContainsKey("val_loss"))["val_loss"]);
        Assert.Contains("\"stage\": \"sft\"", File.ReadAllText(d["run/model/config.json"]));
        Assert.Equal(0, (int)summary["truncated_answers"]!);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void Lora_trains_only_the_adapters_and_the_merged_model_matches_base_plus_adapter(string family)
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"], family: family);
        bool gpt = family == "gpt2";
        // GPT-2: the fused attention projection and the MLP's first layer; Llama: the key projection (64 wide with GQA's 2 KV heads) and the MLP's up projection.
        string attn = gpt ? "c_attn" : "k_proj", mlp = gpt ? "c_fc" : "up_proj";
        var c = Config(baseDir, Data(d), 15) with { Lora = new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0, TargetModules = new() { attn, mlp } } };
        SftTrainer.Run(c, d["run"], false);

        // PEFT layout and names.
        var adapter = d["run/adapter"];
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")))!;
        Assert.Equal(new[] { attn, mlp }, config["target_modules"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(gpt, (bool)config["fan_in_fan_out"]!);
        var tensors = SafeTensors.Load(Path.Combine(adapter, "adapter_model.safetensors"));
        Assert.Equal(2 * 2 * 2, tensors.Count); // 2 layers × 2 targets × (A, B)
        string layer0 = gpt ? "base_model.model.transformer.h.0.attn.c_attn" : "base_model.model.model.layers.0.self_attn.k_proj";
        string layer1 = gpt ? "base_model.model.transformer.h.1.mlp.c_fc" : "base_model.model.model.layers.1.mlp.up_proj";
        Assert.Equal(new long[] { 4, 32 }, tensors[layer0 + ".lora_A.weight"].shape);
        Assert.Equal(new long[] { gpt ? 96 : 16, 4 }, tensors[layer0 + ".lora_B.weight"].shape);
        Assert.Equal(new long[] { gpt ? 128 : 64, 4 }, tensors[layer1 + ".lora_B.weight"].shape);
        Assert.False(tensors[layer1 + ".lora_B.weight"].eq(0).all().item<bool>(), "lora_B was not trained");

        // Base + adapter (the training-time path) equals the merged export.
        var (withAdapter, tok, _) = HfCheckpoint.Load(baseDir);
        PeftAdapter.Load(adapter, withAdapter);
        var (merged, _, _) = HfCheckpoint.Load(d["run/model"]);
        var (plainBase, _, _) = HfCheckpoint.Load(baseDir);
        withAdapter.eval(); merged.eval(); plainBase.eval();
        var x = tensor(tok.Encode("What is the capital of Ohio?").Select(i => (long)i).ToArray()).unsqueeze(0);
        using var _ = no_grad();
        Assert.True(withAdapter.call(x).allclose(merged.call(x), 1e-4, 1e-5));
        Assert.False(plainBase.call(x).allclose(merged.call(x), 1e-4, 1e-5));

        // The base weights inside the adapted model never moved: merging differs from base only where adapters are.
        var mergedParams = merged.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in plainBase.named_parameters())
        {
            bool adapted = name.EndsWith(attn + ".weight", StringComparison.Ordinal) || name.EndsWith(mlp + ".weight", StringComparison.Ordinal);
            Assert.Equal(!adapted, p.equal(mergedParams[name]).all().item<bool>());
        }
    }

    [Theory]
    [InlineData("gpt2", new[] { "wte.weight", "wpe.weight" })]
    [InlineData("llama", new[] { "model.embed_tokens.weight" })]
    public void Freeze_embeddings_keeps_the_family_s_embeddings_and_trains_the_rest(string family, string[] embeddings)
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"], family: family);
        SftTrainer.Run(Config(baseDir, Data(d), 3) with { FreezeEmbeddings = true }, d["run"], false);
        var (before, _, _) = HfCheckpoint.Load(baseDir);
        var (after, _, _) = HfCheckpoint.Load(d["run/model"]);
        var a = after.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(embeddings, before.EmbeddingParameters);
        foreach (var (name, p) in before.named_parameters())
            Assert.Equal(embeddings.Contains(name), p.equal(a[name]).all().item<bool>());
    }

    [Fact]
    public void Sft_gradient_accumulation_1x8_and_8x1_give_the_same_loss_curve()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"]);
        var c = Config(baseDir, Data(d), 5);
        SftTrainer.Run(c with { Optim = c.Optim with { BatchSize = 8, GradAccum = 1, EvalInterval = 0 } }, d["a"], false);
        SftTrainer.Run(c with { Optim = c.Optim with { BatchSize = 1, GradAccum = 8, EvalInterval = 0 } }, d["b"], false);
        var a = MetricsLog.Read(d["a/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        var b = MetricsLog.Read(d["b/metrics.jsonl"]).Select(m => m["loss"]).ToArray();
        Assert.Equal(5, a.Length);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i], 4);
    }

    [Fact]
    public void Resumed_sft_run_matches_an_uninterrupted_one()
    {
        using var d = new TempDir();
        var baseDir = TinyBase.Create(d["base"]);
        var data = Data(d);
        // The same schedule (decay over 12 steps) for all three; the interrupted run stops at 6.
        SftConfig C(int steps) { var c = Config(baseDir, data, steps); return c with { Optim = c.Optim with { DecaySteps = 12, CheckpointInterval = 3 } }; }
        SftTrainer.Run(C(12), d["full"], false);
        SftTrainer.Run(C(6), d["part"], false);
        SftTrainer.Run(C(12), d["part"], true);
        Assert.Equal(File.ReadAllBytes(d["full/model/model.safetensors"]), File.ReadAllBytes(d["part/model/model.safetensors"]));
    }

    [Fact]
    public void Chat_session_drops_the_oldest_turns_to_fit_the_context()
    {
        using var d = new TempDir();
        var (m, tok, _) = HfCheckpoint.Load(TinyBase.Create(d["base"]));
        var s = new ChatSession(m, tok, new SamplingOptions { Temperature = 0, MaxNewTokens = 16 });
        for (int i = 0; i < 6; i++) string.Concat(s.Ask($"Turn number {i} says hello."));
        Assert.True(s.DroppedMessages > 0);
        Assert.Equal("Turn number 5 says hello.", s.History[^2].Content);
        Assert.True(ChatTemplate.Encode(tok, s.History.Take(s.History.Count - 1).ToList(), true).Ids.Length <= 128);
        s.Reset();
        Assert.Empty(s.History);
    }

    static readonly string[] PatternWords = { "whale", "sea", "ship", "captain", "union", "state", "people", "congress", "nation", "water", "harpoon", "deck", "law", "peace", "war", "trade" };

    static (string Instruction, string Output) PatternPair(Random rng) =>
        ($"Name the {PatternWords[rng.Next(PatternWords.Length)]}.", $"The {PatternWords[rng.Next(PatternWords.Length)]}.");

    [Fact]
    public void Self_instruct_keeps_new_well_formed_instructions_and_says_why_it_dropped_the_rest()
    {
        // A tiny model that has seen the self-instruct layout ("Instruction: …\nOutput: …\n\n") writes pairs
        // in it often enough for some to be kept: the run has something to keep, and the test checks what it kept.
        using var d = new TempDir();
        var rng = new Random(1);
        File.WriteAllLines(d["pattern.jsonl"], Enumerable.Range(0, 300).Select(_ => new System.Text.Json.Nodes.JsonObject
        {
            ["text"] = string.Concat(Enumerable.Range(0, 4).Select(_ => PatternPair(rng)).Select(p => $"Instruction: {p.Instruction}\nOutput: {p.Output}\n\n")),
        }.ToJsonString()));
        Pretrainer.Run(PretrainConfig.Tiny with
        {
            Data = new() { d["pattern.jsonl"] }, Model = PretrainConfig.Tiny.Model with { BlockSize = 64, NEmbd = 64 }, SampleTokens = 0, Deterministic = true,
            Optim = PretrainConfig.Tiny.Optim with { MaxSteps = 300, BatchSize = 8, LearningRate = 1e-2, MinLr = 1e-3, EvalInterval = 0, CheckpointInterval = 0 },
        }, d["run"], false);
        var (m, tok, _) = HfCheckpoint.Load(d["run/model"]);
        var seeds = Enumerable.Range(0, 4).Select(_ => PatternPair(rng)).Select(p => SftExample.PromptCompletion(p.Instruction, p.Output)).ToList();

        var (kept, report) = SelfInstruct.Run(new TextGenerator(m, tok), tok, seeds, 16, 1);

        Assert.Equal(16, report.Generated);
        Assert.Equal(report.Generated, report.Kept + report.Dropped.Values.Sum());
        Assert.Equal(report.Kept, kept.Count);
        Assert.True(report.Kept >= 2, $"kept {report.Kept} of 16 ({string.Join(", ", report.Dropped.Select(p => $"{p.Key} {p.Value}"))})");
        var pool = seeds.Select(s => SelfInstruct.Words(s.Messages![0].Content)).ToList();
        foreach (var e in kept)
        {
            Assert.Equal("self-instruct", e.Source);
            var (instruction, output) = (e.Messages![0].Content, e.Messages[1].Content);
            Assert.DoesNotContain("\nOutput:", instruction, StringComparison.Ordinal);
            Assert.InRange(SelfInstruct.Words(instruction).Length, 3, 40);
            Assert.NotEqual("", output);
            var words = SelfInstruct.Words(instruction);
            Assert.All(pool, p => Assert.True(SelfInstruct.RougeL(words, p) < 0.7, $"'{instruction}' is a near-duplicate"));
            pool.Add(words);
        }
    }

    [Fact]
    public void Self_instruct_drops_malformed_short_long_and_near_duplicate_pairs()
    {
        var pool = new List<string[]> { SelfInstruct.Words("Name the capital of Ohio") };
        string? Why(string text) => SelfInstruct.Judge(text, pool, 0.7).DropReason;
        Assert.Equal("format", Why(" Name the whale. Output: The whale."));
        Assert.Equal("length", Why(" Name it.\nOutput: The whale."));
        Assert.Equal("length", Why(" Name the whale.\nOutput:  "));
        Assert.Equal("length", Why(" Name the whale.\nOutput: " + string.Join(' ', Enumerable.Repeat("word", 61))));
        Assert.Equal("duplicate", Why(" Name the capital of Ohio, please.\nOutput: Columbus."));
        var (kept, reason) = SelfInstruct.Judge(" Describe the old ship at sea.\nOutput: It is old.\nIt sails.", pool, 0.7);
        Assert.Null(reason);
        Assert.Equal("Describe the old ship at sea.", kept!.Messages![0].Content);
        Assert.Equal("It is old.\nIt sails.", kept.Messages[1].Content);
        Assert.Equal("self-instruct", kept.Source);
    }
}
