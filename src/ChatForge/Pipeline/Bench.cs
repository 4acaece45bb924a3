using System.Diagnostics;
using ChatForge.Data;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Training;
using ChatForge.Util;
using static TorchSharp.torch;

namespace ChatForge.Pipeline;

/// <summary>
/// `chatforge bench`: on this machine, in one process: the fp32 sgemm peak, pretraining throughput
/// of the default (demo) model (or the config's, either family) and its MFU against that peak, generation speed with and without the
/// KV cache at 256 new tokens, and peak resident memory; then a Llama-family section on random weights of a real
/// checkpoint's shape (SmolLM2-135M by default): LoRA fine-tuning tokens/s and cached generation tokens/s.
/// </summary>
public static class Bench
{
    public sealed record Options
    {
        public int MatmulSize { get; init; } = 2048;
        public int TrainSteps { get; init; } = 10;
        public int WarmupSteps { get; init; } = 3;
        public int NewTokens { get; init; } = 256;
        public int PromptTokens { get; init; } = 16;
        public PretrainConfig Config { get; init; } = PretrainConfig.Demo;
        /// <summary>The Llama-family model of section 4 (random weights); null skips it.</summary>
        public LlamaConfig? Llama { get; init; } = SmolLM2_135M;
        public int LlamaBatch { get; init; } = 4;
        public int LlamaSeqLen { get; init; } = 128;
        public int LlamaTrainSteps { get; init; } = 3;
        public int LlamaNewTokens { get; init; } = 64;
        public LoraConfig LlamaLora { get; init; } = new() { R = 8, LoraAlpha = 16, LoraDropout = 0 };
    }

    /// <summary>HuggingFaceTB/SmolLM2-135M's config.json: 30 layers × 576, 9 query heads sharing 3 key/value heads, SwiGLU 1,536, tied, 49,152 ids.</summary>
    public static LlamaConfig SmolLM2_135M => new()
    {
        VocabSize = 49152, HiddenSize = 576, IntermediateSize = 1536, NumHiddenLayers = 30, NumAttentionHeads = 9, NumKeyValueHeads = 3,
        MaxPositionEmbeddings = 8192, RmsNormEps = 1e-5, RopeTheta = 100000, TieWordEmbeddings = true, InitializerRange = 0.041666666666666664,
    };

    /// <summary>A Llama of a few hundred thousand parameters, for tests of the bench itself.</summary>
    public static LlamaConfig TinyLlama => new()
    {
        VocabSize = 512, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 512, TieWordEmbeddings = true,
    };

    public static Dictionary<string, double> Run(Options o, Action<string>? log = null)
    {
        var r = new Dictionary<string, double>();
        var c = o.Config;
        r["threads"] = get_num_threads();

        // 1. sgemm peak.
        using (NewDisposeScope())
        {
            int n = o.MatmulSize;
            var a = randn(n, n); var b = randn(n, n);
            for (int i = 0; i < 3; i++) a.matmul(b).Dispose();
            int reps = 10;
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) a.matmul(b).Dispose();
            r["sgemm_gflops"] = 2.0 * n * n * n * reps / sw.Elapsed.TotalSeconds / 1e9;
        }
        log?.Invoke($"sgemm {o.MatmulSize}²: {r["sgemm_gflops"]:F1} GFLOP/s");

        // 2. Training throughput of the default model on random tokens (the same step the trainer runs).
        int vocab = c.Tokenizer.Kind switch { "byte" => new ByteTokenizer().VocabSize, "gpt2" => 50259, _ => c.Tokenizer.VocabSize };
        int special = Math.Min(256, vocab - 1);   // bos/eos ids of the random model (unused: random tokens)
        manual_seed(0);
        using (var model = c.Model.Build(vocab, special, special))
        {
            using var opt = TrainingLoop.CreateOptimizer(model.named_parameters(), c.Optim);
            int bsz = c.Optim.BatchSize, t = c.Model.BlockSize;
            void Step()
            {
                using var scope = NewDisposeScope();
                var (x, y) = CausalBatch.Shift(randint(0, vocab, new long[] { bsz, t + 1 }));
                opt.zero_grad();
                var loss = Losses.CrossEntropy(model.call(x), y);
                loss.backward();
                nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                opt.step();
            }
            model.train();
            for (int i = 0; i < o.WarmupSteps; i++) Step();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < o.TrainSteps; i++) Step();
            double tps = (double)bsz * t * o.TrainSteps / sw.Elapsed.TotalSeconds;
            r["train_tokens_per_second"] = tps;
            r["train_gflops"] = TrainFlopsPerToken(model, c.Model, t) * tps / 1e9;
            r["mfu"] = r["train_gflops"] / r["sgemm_gflops"];
            r["parameters"] = model.ParameterCount;
        }
        log?.Invoke($"train: {r["train_tokens_per_second"]:F0} tokens/s, {r["train_gflops"]:F1} GFLOP/s, MFU {r["mfu"]:P1}");

        // 3. Generation, 256 new tokens after a short prompt, batch 1, greedy, with and without the KV cache.
        manual_seed(0);
        using (var model = (c.Model with { BlockSize = Math.Max(c.Model.BlockSize, o.PromptTokens + o.NewTokens) }).Build(vocab, special, special))
        {
            model.eval();
            var gen = new TextGenerator(model, new ByteTokenizer());
            var prompt = Enumerable.Range(0, o.PromptTokens).Select(i => 65 + i % 26).ToArray();
            var so = new SamplingOptions { MaxNewTokens = o.NewTokens, Temperature = 0, IgnoreEos = true };
            gen.Generate(new[] { prompt }, so with { MaxNewTokens = 8 }, useCache: true);
            var sw = Stopwatch.StartNew();
            var cached = gen.Generate(new[] { prompt }, so, useCache: true)[0];
            r["generate_tokens_per_second_cached"] = cached.Tokens.Length / sw.Elapsed.TotalSeconds;
            sw.Restart();
            var uncached = gen.Generate(new[] { prompt }, so, useCache: false)[0];
            r["generate_tokens_per_second_uncached"] = uncached.Tokens.Length / sw.Elapsed.TotalSeconds;
            r["kv_cache_speedup"] = r["generate_tokens_per_second_cached"] / r["generate_tokens_per_second_uncached"];
            r["generate_same_tokens"] = cached.Tokens.SequenceEqual(uncached.Tokens) ? 1 : 0;
            r["generate_new_tokens"] = cached.Tokens.Length;
        }
        log?.Invoke($"generate: {r["generate_tokens_per_second_cached"]:F0} tokens/s cached, {r["generate_tokens_per_second_uncached"]:F0} uncached ({r["kv_cache_speedup"]:F1}×)");

        r["peak_rss_mb"] = PeakMemory.PeakRssMb();
        if (o.Llama is { } lc) LlamaSection(o, lc, r, log);
        return r;
    }

    /// <summary>
    /// Training FLOPs per token, llm.c's count: 6·N + 6·L·C·T, N without GPT-2's learned position embeddings (which cost no
    /// matmul), the tied head counted once.
    /// </summary>
    static double TrainFlopsPerToken(CausalLM model, ModelSpec spec, int seqLen) =>
        6.0 * (model.ParameterCount - (model is Gpt g ? (long)g.Config.NPositions * g.Config.NEmbd : 0)) + 6.0 * spec.NLayer * spec.NEmbd * seqLen;

    /// <summary>
    /// 4. The Llama family at a real checkpoint's shape, random weights: LoRA fine-tuning (adapters on every projection, the
    /// step SFT runs: cross-entropy over all positions of random tokens, AdamW on the adapters) and greedy cached generation.
    /// </summary>
    static void LlamaSection(Options o, LlamaConfig lc, Dictionary<string, double> r, Action<string>? log)
    {
        manual_seed(0);
        using var model = new Llama(lc);
        r["llama_parameters"] = model.ParameterCount;
        Lora.Attach(model, o.LlamaLora);
        var adapters = Lora.Parameters(model).ToList();
        r["llama_lora_trainable_parameters"] = adapters.Sum(p => p.Param.numel());
        using (var opt = TrainingLoop.CreateOptimizer(adapters, new OptimConfig { LearningRate = 1e-4, MinLr = 1e-5 }))
        {
            int bsz = o.LlamaBatch, t = o.LlamaSeqLen;
            void Step()
            {
                using var scope = NewDisposeScope();
                var (x, y) = CausalBatch.Shift(randint(0, lc.VocabSize, new long[] { bsz, t + 1 }));
                opt.zero_grad();
                var loss = Losses.CrossEntropy(model.call(x), y);
                loss.backward();
                nn.utils.clip_grad_norm_(adapters.Select(p => p.Param), 1.0);
                opt.step();
            }
            model.train();
            Step();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < o.LlamaTrainSteps; i++) Step();
            r["llama_lora_train_tokens_per_second"] = (double)bsz * t * o.LlamaTrainSteps / sw.Elapsed.TotalSeconds;
        }
        log?.Invoke($"llama {r["llama_parameters"] / 1e6:F1}M, LoRA r={o.LlamaLora.R} on every projection ({r["llama_lora_trainable_parameters"]:N0} trainable): " +
                    $"{r["llama_lora_train_tokens_per_second"]:F0} tokens/s fine-tuning");

        model.eval();
        var gen = new TextGenerator(model, new ByteTokenizer());   // ids only: the byte tokenizer's specials stand in for the checkpoint's
        var prompt = Enumerable.Range(0, o.PromptTokens).Select(i => 65 + i % 26).ToArray();
        var so = new SamplingOptions { MaxNewTokens = o.LlamaNewTokens, Temperature = 0, IgnoreEos = true };
        gen.Generate(new[] { prompt }, so with { MaxNewTokens = 4 }, useCache: true);
        var timer = Stopwatch.StartNew();
        var cached = gen.Generate(new[] { prompt }, so, useCache: true)[0];
        r["llama_generate_tokens_per_second_cached"] = cached.Tokens.Length / timer.Elapsed.TotalSeconds;
        r["llama_peak_rss_mb"] = PeakMemory.PeakRssMb();
        log?.Invoke($"llama generate: {r["llama_generate_tokens_per_second_cached"]:F1} tokens/s cached; peak {r["llama_peak_rss_mb"]:F0} MB");
    }
}
