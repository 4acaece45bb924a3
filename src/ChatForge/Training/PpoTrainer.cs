using System.Diagnostics;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Modeling;
using ChatForge.Native;
using ChatForge.Tokenization;
using ChatForge.Util;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>
/// RLHF with PPO, as InstructGPT describes it. Each iteration: the policy samples a response per
/// prompt; the frozen reward model scores it; per-token rewards are −β·(log π − log π_ref) plus the
/// score at the last token; GAE gives advantages and returns; several epochs of clipped-surrogate
/// policy updates and clipped value updates follow over minibatches, with an optional γ-weighted
/// next-token loss on pretraining text mixed in (PPO-ptx). Four models: policy (trained), reference
/// (frozen SFT), reward (frozen), value (trained).
/// </summary>
public sealed class PpoTrainer
{
    readonly PpoConfig _c;
    readonly Gpt _policy, _ref;
    RewardModel? _rm;
    Func<IReadOnlyList<string>, IReadOnlyList<string>, IReadOnlyList<int[]>, double[]> _reward;
    readonly RewardModel _value;
    readonly ITokenizer _tok;
    readonly AdamW _policyOpt, _valueOpt;
    readonly List<string> _prompts, _evalPrompts;
    readonly TokenStream? _ptxTrain, _ptxVal;
    readonly SentimentOracle? _oracle;
    readonly Device _device;
    public double Beta { get; private set; }

    /// <param name="reward">Scores (prompts, response texts, response ids) → one reward each; null means the reward model's normalised score.</param>
    public PpoTrainer(PpoConfig c, Gpt policy, Gpt reference, RewardModel? rm, RewardModel value, ITokenizer tok,
               List<string> prompts, List<string> evalPrompts, TokenStream? ptxTrain, TokenStream? ptxVal, SentimentOracle? oracle,
               Func<IReadOnlyList<string>, IReadOnlyList<string>, IReadOnlyList<int[]>, double[]>? reward = null)
    {
        // Generation slides past the context, but a rollout is scored in one window of query + response.
        if (c.MaxNewTokens >= policy.Config.NPositions)
            throw new ChatForgeException($"ppo config: 'max_new_tokens' = {c.MaxNewTokens} must be less than the model's context ({policy.Config.NPositions})");
        _c = c; _policy = policy; _ref = reference; _rm = rm; _value = value; _tok = tok;
        _reward = reward ?? RmReward;
        _prompts = prompts; _evalPrompts = evalPrompts; _ptxTrain = ptxTrain; _ptxVal = ptxVal; _oracle = oracle;
        _device = policy.TokenEmbedding.device;
        Beta = c.Beta;
        var po = new OptimConfig { LearningRate = c.LearningRate, WeightDecay = 0, Beta2 = 0.95 };
        _policyOpt = TrainingLoop.CreateOptimizer(policy.named_parameters(), po);
        _valueOpt = TrainingLoop.CreateOptimizer(value.named_parameters(), po with { LearningRate = c.ValueLearningRate });
        foreach (var p in reference.parameters()) p.requires_grad = false;
        if (rm is not null) { foreach (var p in rm.parameters()) p.requires_grad = false; rm.eval(); }
        reference.eval();
    }

    double[] RmReward(IReadOnlyList<string> prompts, IReadOnlyList<string> texts, IReadOnlyList<int[]> _) =>
        _rm!.Rate(_tok, prompts.Select((p, i) => (p, _c.Chat, texts[i])).ToList());

    /// <summary>Swaps in a retrained reward model (iterated RLHF).</summary>
    public void ReplaceRewardModel(RewardModel rm)
    {
        _rm?.Dispose();
        _rm = rm;
        foreach (var p in rm.parameters()) p.requires_grad = false;
        rm.eval();
        _reward = RmReward;
    }

    /// <summary>A rollout: prompts and sampled responses (ids), with everything PPO needs per response token.</summary>
    public sealed class Rollout
    {
        public required List<int[]> Queries;
        public required List<int[]> Responses;
        public required List<string> Texts;
        public required Tensor Mask, OldLogp, RefLogp, Values, Advantages, Returns, Scores;
        public required double[] Oracle;
    }

    /// <summary>Right-padded query+response sequences and, per response token j, the position whose output predicts it.</summary>
    (Tensor Ids, Tensor Pos, Tensor Mask, Tensor Targets) Layout(IReadOnlyList<int[]> queries, IReadOnlyList<int[]> responses)
    {
        int b = queries.Count;
        int t = queries.Select((q, i) => q.Length + responses[i].Length).Max();
        int tr = Math.Max(1, responses.Max(r => r.Length));
        var ids = new long[b * t]; var pos = new long[b * tr]; var mask = new float[b * tr]; var tgt = new long[b * tr];
        for (int i = 0; i < b; i++)
        {
            var q = queries[i]; var r = responses[i];
            for (int j = 0; j < t; j++) ids[i * t + j] = j < q.Length ? q[j] : j - q.Length < r.Length ? r[j - q.Length] : _tok.EosId();
            for (int j = 0; j < tr; j++)
            {
                pos[i * tr + j] = j < r.Length ? q.Length + j - 1 : q.Length - 1;
                mask[i * tr + j] = j < r.Length ? 1 : 0;
                tgt[i * tr + j] = j < r.Length ? r[j] : 0;
            }
        }
        return (tensor(ids, new long[] { b, t }, device: _device), tensor(pos, new long[] { b, tr }, device: _device),
                tensor(mask, new long[] { b, tr }, device: _device), tensor(tgt, new long[] { b, tr }, device: _device));
    }

    /// <summary>log π(response token) (B, Tr) and, optionally, per-token entropy.</summary>
    static (Tensor Logp, Tensor? Entropy) ResponseLogp(Gpt model, Tensor ids, Tensor pos, Tensor targets, bool entropy)
    {
        var logits = model.call(ids);                                                          // (B, T, V)
        var at = logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[2]));          // (B, Tr, V)
        var lp = at.log_softmax(-1);
        var logp = lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
        return (logp, entropy ? -(lp.exp() * lp).sum(-1) : null);
    }

    static Tensor ResponseValues(RewardModel value, Tensor ids, Tensor pos) => value.AllScores(ids).gather(1, pos);

    public Rollout Collect(IReadOnlyList<string> prompts, long seed)
    {
        var queries = prompts.Select(p => _c.Chat ? ChatTemplate.Encode(_tok, new[] { new ChatMessage("user", p) }, true).Ids : _tok.Encode(p)).ToList();
        var gen = new TextGenerator(_policy, _tok);
        var o = new SamplingOptions
        {
            Temperature = 1.0, MaxNewTokens = _c.MaxNewTokens, Seed = seed,
            StopTokenIds = _c.Chat ? new[] { _tok.Id(SpecialTokens.ImEnd) } : Array.Empty<int>(),
        };
        var comps = gen.Generate(queries, o);
        // The stop token is part of the action sequence: stopping is a choice the policy is credited for.
        var responses = comps.Select(cm => cm.StopToken is { } st ? cm.Tokens.Append(st).ToArray() : cm.Tokens).ToList();
        for (int i = 0; i < responses.Count; i++) if (responses[i].Length == 0) responses[i] = new[] { _tok.EosId() };
        queries = queries.Select((q, i) => q.Length + responses[i].Length > _policy.Config.NPositions ? q[^(_policy.Config.NPositions - responses[i].Length)..] : q).ToList();
        var texts = comps.Select(cm => cm.Text).ToList();

        using var _ = no_grad();
        var (ids, pos, mask, tgt) = Layout(queries, responses);
        _policy.eval();
        var (oldLogp, _) = ResponseLogp(_policy, ids, pos, tgt, false);
        var (refLogp, _) = ResponseLogp(_ref, ids, pos, tgt, false);
        _value.eval();
        var values = ResponseValues(_value, ids, pos) * mask;
        var raw = _reward(prompts, texts, responses);
        var scoresArr = raw.Select(s => _c.ScoreClip is { } clip ? Math.Clamp(s, -clip, clip) : s).Select(s => (float)s).ToArray();
        var scores = tensor(scoresArr, device: _device);
        var rewards = Losses.KlPenalizedRewards(oldLogp, refLogp, scores, mask, Beta);
        var (adv, ret) = Losses.Gae(rewards, values, mask, _c.Gamma, _c.Lambda);
        if (_c.WhitenAdvantages) adv = Losses.Whiten(adv, mask);
        var oracle = _oracle is null ? Array.Empty<double>() : texts.Select(_oracle.Score).ToArray();
        return new Rollout
        {
            Queries = queries, Responses = responses, Texts = texts, Mask = mask, OldLogp = oldLogp, RefLogp = refLogp, Values = values,
            Advantages = adv, Returns = ret, Scores = scores, Oracle = oracle,
        };
    }

    /// <summary>PPO epochs over minibatches of a rollout; returns the mean training metrics.</summary>
    public Dictionary<string, double> Update(Rollout r, long iteration)
    {
        var sums = new Dictionary<string, double>();
        int n = r.Queries.Count, updates = 0;
        long trainTokens = 0;
        var rng = new Random((int)(TokenStream.Mix((ulong)_c.Seed, (ulong)iteration, 17) & 0x7fffffff));
        bool stop = false;
        for (int epoch = 0; epoch < _c.PpoEpochs && !stop; epoch++)
        {
            var order = Enumerable.Range(0, n).ToArray();
            rng.Shuffle(order);
            for (int s = 0; s < n; s += _c.MiniBatch)
            {
                using var scope = NewDisposeScope();
                var idx = order.Skip(s).Take(_c.MiniBatch).ToArray();
                var sel = tensor(idx.Select(i => (long)i).ToArray(), device: _device);
                var (ids, pos, mask, tgt) = Layout(idx.Select(i => r.Queries[i]).ToList(), idx.Select(i => r.Responses[i]).ToList());
                int tr = (int)mask.shape[1];
                Tensor Sel(Tensor x) => x.index_select(0, sel).narrow(1, 0, tr);
                var oldLogp = Sel(r.OldLogp); var adv = Sel(r.Advantages); var ret = Sel(r.Returns); var oldV = Sel(r.Values);

                _policy.train();
                var (logp, ent) = ResponseLogp(_policy, ids, pos, tgt, true);
                var (pg, clipFrac) = Losses.PpoPolicyLoss(logp, oldLogp, adv, mask, _c.ClipRange);
                var entropy = Losses.MaskedMean(ent!, mask);
                var policyLoss = pg - _c.EntropyCoef * entropy;
                double ptx = double.NaN;
                if (_c.PtxCoef > 0 && _ptxTrain is not null)
                {
                    int bt = Math.Min(Math.Min(_c.PtxLength, _policy.Config.NPositions), _ptxTrain.Tokens.Length - 2);
                    var offs = _ptxTrain.RandomOffsets(_c.Seed, iteration * 1000 + updates, 0, _c.PtxBatch, bt);
                    var (x, y) = Pretrainer.Windows(_ptxTrain, offs, bt, _device);
                    var ptxLoss = Losses.CrossEntropy(_policy.call(x), y);
                    policyLoss = policyLoss + _c.PtxCoef * ptxLoss;
                    ptx = ptxLoss.item<float>();
                }
                _policyOpt.zero_grad();
                policyLoss.backward();
                if (_c.GradClip > 0) nn.utils.clip_grad_norm_(_policy.parameters(), _c.GradClip);
                _policyOpt.step();

                _value.train();
                var v = ResponseValues(_value, ids, pos);
                var vf = Losses.PpoValueLoss(v, oldV, ret, mask, _c.ClipRangeValue);
                _valueOpt.zero_grad();
                vf.backward();
                if (_c.GradClip > 0) nn.utils.clip_grad_norm_(_value.parameters(), _c.GradClip);
                _valueOpt.step();

                var logRatio = (logp - oldLogp).detach();
                double approxKl = Losses.MaskedMean((logRatio.exp() - 1) - logRatio, mask).item<float>();
                void Add(string k, double val) { if (double.IsFinite(val)) sums[k] = sums.GetValueOrDefault(k) + val; }
                Add("policy_loss", pg.item<float>()); Add("value_loss", vf.item<float>()); Add("entropy", entropy.item<float>());
                Add("clip_fraction", clipFrac.item<float>()); Add("approx_kl", approxKl); Add("ptx_loss", ptx);
                updates++;
                trainTokens += ids.numel();
                if (approxKl > _c.EarlyStopKl) { stop = true; break; } // KL spike: stop updating on this rollout
            }
        }
        var m = sums.ToDictionary(kv => kv.Key, kv => kv.Value / updates);
        m["ppo_updates"] = updates;
        m["train_tokens"] = trainTokens;
        m["early_stopped"] = stop ? 1 : 0;
        return m;
    }

    /// <summary>Held-out metrics: oracle and RM scores of sampled responses, KL to the reference, pretraining loss.</summary>
    public Dictionary<string, double> Evaluate(long seed)
    {
        using var scope = NewDisposeScope();
        var r = Collect(_evalPrompts, seed);
        var m = RolloutStats(r);
        m = m.ToDictionary(kv => "eval_" + kv.Key, kv => kv.Value);
        if (_ptxVal is not null) m["eval_pretrain_loss"] = PretrainLoss(_policy, _ptxVal);
        return m;
    }

    /// <summary>Mean next-token loss on a fixed set of held-out pretraining windows.</summary>
    public static double PretrainLoss(Gpt model, TokenStream val, int windows = 64)
    {
        int t = Math.Min(model.Config.NPositions, val.Tokens.Length - 2);
        var offs = val.EvalOffsets(t, windows);
        double nats = 0, n = 0;
        using var _ = no_grad();
        model.eval();
        var device = model.TokenEmbedding.device;
        for (int i = 0; i < offs.Length; i += 16)
        {
            using var scope = NewDisposeScope();
            var (x, y) = Pretrainer.Windows(val, offs.Skip(i).Take(16).ToArray(), t, device);
            var (s, c) = Losses.CrossEntropySum(model.call(x), y);
            nats += s.item<float>(); n += c.item<long>();
        }
        return nats / n;
    }

    public static Dictionary<string, double> RolloutStats(Rollout r)
    {
        var kl = ((r.OldLogp - r.RefLogp) * r.Mask).sum(1);                                  // per response, nats
        var m = new Dictionary<string, double>
        {
            ["rm_score"] = r.Scores.mean().item<float>(),
            ["kl"] = kl.mean().item<float>(),
            ["response_length"] = r.Mask.sum(1).mean().item<float>(),
        };
        if (r.Oracle.Length > 0)
        {
            m["oracle_score"] = r.Oracle.Average();
            m["oracle_score_sd"] = Math.Sqrt(r.Oracle.Select(x => (x - r.Oracle.Average()) * (x - r.Oracle.Average())).Sum() / Math.Max(1, r.Oracle.Length - 1));
        }
        return m;
    }

    void AdaptBeta(double kl)
    {
        if (_c.AdaptiveKl is not { } a) return;
        double err = Math.Clamp((kl - a.Target) / a.Target, -0.2, 0.2);
        Beta *= 1 + err * _c.RolloutBatch / a.Horizon;
    }

    void SaveCheckpoint(RunDirectory run, long iteration, int round, double elapsed)
    {
        AtomicFile.ReplaceDirectory(run.ModelDir, dir =>
        {
            HfCheckpoint.Write(dir, _policy, _tok, configExtra: new System.Text.Json.Nodes.JsonObject
            {
                ["chatforge"] = new System.Text.Json.Nodes.JsonObject { ["stage"] = "ppo", ["base_model"] = _c.Model, ["reward_model"] = _c.Reward },
            });
            _value.Save(Path.Combine(dir, "value"), _tok, stage: "value");
            var st = new TrainingState
            {
                Step = iteration, Seed = _c.Seed, ElapsedSeconds = elapsed,
                Extra = new Dictionary<string, double> { ["beta"] = Beta, ["round"] = round },
            };
            st.Save(Path.Combine(dir, TrainingState.DirName), _policyOpt, _valueOpt);
        });
    }

    public static Dictionary<string, object?> Run(PpoConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("ppo config");
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume, c.Seed, c.Deterministic, c.Threads, c.Device);

        // Prompts and, for the demo, the oracle and pretraining text (PPO-ptx, held-out pretraining loss).
        List<string> prompts, evalPrompts;
        SentimentOracle? oracle = null;
        Corpora? corpora = null;
        if (c.Prompts.Count == 0)
        {
            corpora = Pretrainer.OpenCorpora(c.Cache, log);
            (prompts, evalPrompts) = SentimentPrompts.Build(corpora);
            evalPrompts = evalPrompts.Take(c.EvalPrompts).ToList();
            oracle = SentimentOracle.FromCorpora(corpora);
        }
        else
        {
            var all = c.Prompts.SelectMany(f => Jsonl.Read(f).Select(r => r.Row.String("prompt", f, r.Line))).ToList();
            if (all.Count < 2) throw new ChatForgeException("need at least two prompts");
            evalPrompts = all.Where(p => DemoTasks.Unit(c.Seed, "ppo:" + p) < 0.1).Take(c.EvalPrompts).ToList();
            if (evalPrompts.Count == 0) evalPrompts.Add(all[^1]);
            prompts = all.Except(evalPrompts).ToList();
            if (Corpora.IsFetched(c.Cache)) { corpora = Corpora.Open(c.Cache); oracle = SentimentOracle.FromCorpora(corpora); }
        }

        var policyDir = resuming ? run.ModelDir : c.Model;
        var (policy, tok, _) = HfCheckpoint.Load(policyDir, device);
        var (reference, _, _) = HfCheckpoint.Load(c.Model, device);
        var state = resuming ? TrainingState.ReadOnly(run.StateDir) : null;
        int startRound = (int)(state?.Extra.GetValueOrDefault("round") ?? 0);
        string RoundRm(int r) => r == 0 ? c.Reward : Path.Combine(run.Root, $"round{r}", "reward", "model");
        var (rm, _) = RewardModel.Load(RoundRm(startRound), device);
        RewardModel value;
        if (resuming) (value, _) = RewardModel.Load(Path.Combine(run.ModelDir, "value"), device);
        else if (c.ValueInit == "reward") (value, _) = RewardModel.Load(c.Reward, device);
        else value = new RewardModel(HfCheckpoint.Load(c.Model, device).Model);

        TokenStream? ptxTrain = null, ptxVal = null;
        if (corpora is not null)
        {
            var docs = TextCorpus.Load(new[] { corpora.MobyDick, corpora.Sotu });
            var (tr, va) = TextCorpus.Split(docs, 0.05, 1337);
            ptxTrain = TokenStream.Encode(tr.Take(60), tok);
            ptxVal = TokenStream.Encode(va, tok);
        }

        var ppo = new PpoTrainer(c, policy, reference, rm, value, tok, prompts, evalPrompts, ptxTrain, ptxVal, oracle);
        long startIter = 0;
        double elapsedBefore = 0;
        if (resuming)
        {
            var st = TrainingState.Load(run.StateDir, ppo._policyOpt, ppo._valueOpt);
            startIter = st.Step; elapsedBefore = st.ElapsedSeconds;
            ppo.Beta = st.Extra.GetValueOrDefault("beta", c.Beta);
            log?.Invoke($"resuming PPO at iteration {startIter} (round {startRound + 1}), β = {ppo.Beta:F4}");
        }
        using var metricsLog = new MetricsLog(run, resuming ? startIter : -1);
        var sampler = new EpochSampler(prompts.Count, c.Seed, c.RolloutBatch);
        long total = (long)c.Iterations * c.Rounds;
        var sw = Stopwatch.StartNew();
        Dictionary<string, double> lastEval = new();
        Dictionary<string, double>? firstEval = null;
        long evalSeed = (long)(TokenStream.Mix((ulong)c.Seed, 999) & 0x7fffffff); // the same held-out samples every evaluation

        if (!resuming)
        {
            firstEval = ppo.Evaluate(evalSeed);
            metricsLog.Write(0, firstEval);
            log?.Invoke("before PPO: " + string.Join(", ", firstEval.Select(kv => $"{kv.Key} {kv.Value:F3}")));
        }

        for (long it = startIter; it < total; it++)
        {
            cancel.ThrowIfCancellationRequested();
            int round = (int)(it / c.Iterations);
            if (round > 0 && it % c.Iterations == 0)
            {
                // Iterated RLHF: new rankings from the current policy, a retrained reward model, then more PPO.
                log?.Invoke($"round {round + 1}: collecting rankings with the current policy and retraining the reward model");
                var rc = new RewardConfig
                {
                    Model = c.Model, Cache = c.Cache, Collect = c.RoundCollect with { Seed = c.Seed + round }, Seed = c.Seed + round,
                    Deterministic = c.Deterministic, Device = c.Device, Threads = c.Threads,
                    Optim = new RewardConfig().Optim with { MaxSteps = c.RoundRewardSteps, EvalInterval = 0, CheckpointInterval = 0 },
                };
                var roundDir = Path.Combine(run.Root, $"round{round}", "reward");
                ppo.SaveCheckpoint(run, it, round, elapsedBefore + sw.Elapsed.TotalSeconds);
                RewardTrainer.Run(rc with { Model = c.Model }, roundDir, false, log, null, cancel, collectWith: run.ModelDir);
                ppo.ReplaceRewardModel(RewardModel.Load(RoundRm(round), device).Model);
            }
            var t0 = sw.Elapsed.TotalSeconds;
            Rollout r;
            Dictionary<string, double> m;
            using (var scope = NewDisposeScope())
            {
                var batchPrompts = sampler.Indices(it, 0, c.RolloutBatch).Select(i => prompts[i]).ToList();
                r = ppo.Collect(batchPrompts, (long)(TokenStream.Mix((ulong)c.Seed, (ulong)it) & 0x7fffffffffff));
                var t1 = sw.Elapsed.TotalSeconds;
                long tokens = r.Responses.Sum(x => (long)x.Length);
                m = RolloutStats(r);
                foreach (var (k, v) in ppo.Update(r, it)) m[k] = v;
                var t2 = sw.Elapsed.TotalSeconds;
                m["rollout_tokens_per_second"] = tokens / Math.Max(1e-9, t1 - t0);
                m["train_tokens_per_second"] = m["train_tokens"] / Math.Max(1e-9, t2 - t1);
                m.Remove("train_tokens");
                m["beta"] = ppo.Beta;
                m["round"] = round + 1;
                ppo.AdaptBeta(m["kl"]);
            }
            long done = it + 1;
            bool last = done == total;
            if (last || (c.EvalInterval > 0 && done % c.EvalInterval == 0))
            {
                lastEval = ppo.Evaluate(evalSeed);
                foreach (var (k, v) in lastEval) m[k] = v;
            }
            m["elapsed_s"] = elapsedBefore + sw.Elapsed.TotalSeconds;
            metricsLog.Write(done, m);
            if (done % TrainingLoop.TrimEvery == 0) TorchRuntime.TrimNativeHeap();
            if (last || (c.CheckpointInterval > 0 && done % c.CheckpointInterval == 0))
                ppo.SaveCheckpoint(run, done, round, elapsedBefore + sw.Elapsed.TotalSeconds);
            progress?.Invoke(new TrainingProgress(done, total, m.GetValueOrDefault("rm_score"), m["rollout_tokens_per_second"],
                TimeSpan.FromSeconds(elapsedBefore + sw.Elapsed.TotalSeconds),
                TimeSpan.FromSeconds(sw.Elapsed.TotalSeconds / (done - startIter) * (total - done)), lastEval.Count > 0 && m.ContainsKey("eval_kl") ? lastEval : null));
        }
        if (startIter >= total) lastEval = ppo.Evaluate(evalSeed);

        var rows = MetricsLog.Read(run.MetricsPath);
        Plots.Lines(run.Path_("ppo_reward.png"), "PPO: reward-model and oracle scores", "iteration", "mean score", new[]
        {
            ("RM score (rollouts)", rows.Where(x => x.ContainsKey("rm_score")).Select(x => (x["step"], x["rm_score"])).ToList()),
            ("oracle (rollouts)", rows.Where(x => x.ContainsKey("oracle_score")).Select(x => (x["step"], x["oracle_score"])).ToList()),
            ("oracle (held-out)", rows.Where(x => x.ContainsKey("eval_oracle_score")).Select(x => (x["step"], x["eval_oracle_score"])).ToList()),
        });
        Plots.Lines(run.Path_("ppo_kl.png"), "PPO: KL to the SFT model", "iteration", "KL (nats per response)", new[]
        {
            ("KL (rollouts)", rows.Where(x => x.ContainsKey("kl")).Select(x => (x["step"], x["kl"])).ToList()),
            ("KL (held-out)", rows.Where(x => x.ContainsKey("eval_kl")).Select(x => (x["step"], x["eval_kl"])).ToList()),
        });
        var first = firstEval ?? rows.FirstOrDefault(x => x["step"] == 0) ?? new Dictionary<string, double>();
        var summary = new Dictionary<string, object?>
        {
            ["oracle_sentiment"] = lastEval.GetValueOrDefault("eval_oracle_score", double.NaN),
            ["oracle_sentiment_sd"] = lastEval.GetValueOrDefault("eval_oracle_score_sd", double.NaN),
            ["rm_score"] = lastEval.GetValueOrDefault("eval_rm_score", double.NaN),
            ["kl_to_sft"] = lastEval.GetValueOrDefault("eval_kl", double.NaN),
            ["pretrain_val_loss"] = lastEval.GetValueOrDefault("eval_pretrain_loss", double.NaN),
            ["sft_oracle_sentiment"] = first.GetValueOrDefault("eval_oracle_score", double.NaN),
            ["sft_oracle_sentiment_sd"] = first.GetValueOrDefault("eval_oracle_score_sd", double.NaN),
            ["sft_rm_score"] = first.GetValueOrDefault("eval_rm_score", double.NaN),
            ["sft_pretrain_val_loss"] = first.GetValueOrDefault("eval_pretrain_loss", double.NaN),
            ["beta_final"] = ppo.Beta,
            ["ptx_coef"] = c.PtxCoef,
            ["iterations"] = total,
            ["rounds"] = c.Rounds,
            ["wall_seconds"] = elapsedBefore + sw.Elapsed.TotalSeconds,
        };
        double gain = (double)summary["oracle_sentiment"]! - (double)summary["sft_oracle_sentiment"]!;
        summary["oracle_gain"] = gain;
        summary["oracle_gain_in_sft_sd"] = gain / (double)summary["sft_oracle_sentiment_sd"]!;
        run.WriteSummary(summary);
        return summary;
    }
}
