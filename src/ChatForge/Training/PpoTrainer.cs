using System.Diagnostics;
using ChatForge.Checkpoints;
using ChatForge.Data;
using ChatForge.Evaluation;
using ChatForge.Generation;
using ChatForge.Labeling;
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
    /// <summary>Largest proportional KL error the adaptive controller acts on (Ziegler et al.: ±0.2).</summary>
    public const double AdaptiveKlMaxError = 0.2;
    /// <summary>Rollouts sample from the policy's own distribution.</summary>
    const double RolloutTemperature = 1.0;
    /// <summary>Adam's β₂ for the policy and value optimizers.</summary>
    const double AdamBeta2 = 0.95;
    /// <summary>Salt of the per-iteration RNG that orders a rollout's minibatches.</summary>
    const ulong MinibatchOrderSalt = 17;
    /// <summary>Salt of the held-out evaluation's sampling seed (the same held-out samples every evaluation).</summary>
    const ulong EvalSeedSalt = 999;
    /// <summary>PPO-ptx draws update u of iteration i from pretraining batch i × this + u (room for that many updates per rollout).</summary>
    const long PtxBatchesPerIteration = 1000;

    readonly PpoConfig _c;
    readonly CausalLM _policy, _ref;
    RewardModel? _rm;
    Func<IReadOnlyList<ChatPrompt>, IReadOnlyList<string>, IReadOnlyList<int[]>, double[]> _reward;
    readonly RewardModel _value;
    readonly ITokenizer _tok;
    readonly AdamW _policyOpt, _valueOpt;
    readonly List<ChatPrompt> _prompts, _evalPrompts;
    readonly TokenStream? _ptxTrain, _ptxVal;
    readonly Func<ChatPrompt, string, double>? _oracle;
    /// <summary>The kind of a held-out prompt (hhh: harmful, benign, unknowable, knowable), for per-kind oracle scores.</summary>
    public Func<ChatPrompt, string?>? KindOf { get; init; }
    readonly Device _device;
    public double Beta { get; private set; }
    /// <summary>The round whose reward model scores the rollouts (0: the given reward model; iterated RLHF retrains it each later round).</summary>
    public int Round { get; private set; }

    /// <param name="reward">Scores (prompts, response texts, response ids) → one reward each; null means the reward model's normalised score.</param>
    public PpoTrainer(PpoConfig c, CausalLM policy, CausalLM reference, RewardModel? rm, RewardModel value, ITokenizer tok,
               List<ChatPrompt> prompts, List<ChatPrompt> evalPrompts, TokenStream? ptxTrain, TokenStream? ptxVal, Func<ChatPrompt, string, double>? oracle,
               Func<IReadOnlyList<ChatPrompt>, IReadOnlyList<string>, IReadOnlyList<int[]>, double[]>? reward = null)
    {
        // Generation slides past the context, but a rollout is scored in one window of query + response.
        if (c.MaxNewTokens >= policy.Context)
            throw new ChatForgeException($"ppo config: 'max_new_tokens' = {c.MaxNewTokens} must be less than the model's context ({policy.Context})");
        _c = c; _policy = policy; _ref = reference; _rm = rm; _value = value; _tok = tok;
        _reward = reward ?? RmReward;
        _prompts = prompts; _evalPrompts = evalPrompts; _ptxTrain = ptxTrain; _ptxVal = ptxVal; _oracle = oracle;
        _device = policy.TokenEmbedding.device;
        Beta = c.Beta;
        var po = new OptimConfig { LearningRate = c.LearningRate, WeightDecay = 0, Beta2 = AdamBeta2 };
        _policyOpt = TrainingLoop.CreateOptimizer(policy.named_parameters(), po);
        _valueOpt = TrainingLoop.CreateOptimizer(value.TrainableParameters(), po with { LearningRate = c.ValueLearningRate });
        foreach (var p in reference.parameters()) p.requires_grad = false;
        if (rm is not null) { foreach (var p in rm.parameters()) p.requires_grad = false; rm.eval(); }
        // All four models run without dropout (as TRL does): with it, an update's log π is a noisy copy of the
        // rollout's and the ratio π/π_old is noise even before the first step. Eval mode only switches dropout off.
        reference.eval(); policy.eval(); value.eval();
    }

    double[] RmReward(IReadOnlyList<ChatPrompt> prompts, IReadOnlyList<string> texts, IReadOnlyList<int[]> _) =>
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
        public required IReadOnlyList<ChatPrompt> Prompts;
        public required List<int[]> Queries;
        public required List<int[]> Responses;
        public required List<string> Texts;
        public required Tensor Mask, OldLogp, RefLogp, Values, Advantages, Returns, Scores;
        public required double[] Oracle;
    }

    /// <summary>Query + response rows whose targets are the response tokens: the one causal batch (label shift, padding, target index).</summary>
    CausalBatch Layout(IReadOnlyList<int[]> queries, IReadOnlyList<int[]> responses) =>
        CausalBatch.Build(queries.Select((q, i) => Segment.From(q.Concat(responses[i]).ToArray(), q.Length)), _tok.EosId(), _device);

    /// <summary>log π(response token) (B, R) and, optionally, per-token entropy.</summary>
    static (Tensor Logp, Tensor? Entropy) ResponseLogp(CausalLM model, CausalBatch batch, bool entropy) =>
        LogProbs.TargetLogProbs(LogProbs.Logits(model, batch), batch, entropy);

    /// <summary>
    /// The value model's prediction at every position (B, T), on the scale of the rewards: its head minus its
    /// stored offset (<see cref="RewardModel.Mean"/>), over its <see cref="RewardModel.Std"/> (see <see cref="InitialValueModel"/>).
    /// </summary>
    public static Tensor Values(RewardModel value, Tensor ids) => (value.ScoresPerPosition(ids) - value.Mean) / value.Std;

    /// <summary>The value model's prediction at the positions that predict each response token (B, R).</summary>
    static Tensor ResponseValues(RewardModel value, CausalBatch batch) => Values(value, batch.Input).gather(1, batch.TargetIndex);

    /// <summary>Samples one response per prompt from the policy and scores it: the rollout PPO's updates learn from.</summary>
    public Rollout SampleRollout(IReadOnlyList<ChatPrompt> prompts, long seed)
    {
        var queries = prompts.Select(p => ChatTemplate.EncodePrompt(_tok, p, _c.Chat)).ToList();
        var gen = new TextGenerator(_policy, _tok);
        var o = new SamplingOptions
        {
            Temperature = RolloutTemperature, MaxNewTokens = _c.MaxNewTokens, Seed = seed,
            StopTokenIds = _c.Chat ? new[] { _tok.EndOfTurnId() } : Array.Empty<int>(),
        };
        var comps = gen.Generate(queries, o);
        // The stop token is part of the action sequence: stopping is a choice the policy is credited for.
        var responses = comps.Select(cm => cm.StopToken is { } st ? cm.Tokens.Append(st).ToArray() : cm.Tokens).ToList();
        for (int i = 0; i < responses.Count; i++) if (responses[i].Length == 0) responses[i] = new[] { _tok.EosId() };
        queries = queries.Select((q, i) => q.Length + responses[i].Length > _policy.Context ? q[^(_policy.Context - responses[i].Length)..] : q).ToList();
        var texts = comps.Select(cm => cm.Text).ToList();

        using var _ = no_grad();
        var batch = Layout(queries, responses);
        var mask = batch.TargetMask;
        _policy.eval();
        var (oldLogp, _) = ResponseLogp(_policy, batch, false);
        var (refLogp, _) = ResponseLogp(_ref, batch, false);
        _value.eval();
        var values = ResponseValues(_value, batch) * mask;
        var raw = _reward(prompts, texts, responses);
        var scoresArr = raw.Select(s => _c.ScoreClip is { } clip ? Math.Clamp(s, -clip, clip) : s).Select(s => (float)s).ToArray();
        var scores = tensor(scoresArr, device: _device);
        var rewards = Losses.KlPenalizedRewards(oldLogp, refLogp, scores, mask, Beta);
        var (adv, ret) = Losses.Gae(rewards, values, mask, _c.Gamma, _c.Lambda);
        if (_c.WhitenAdvantages) adv = Losses.Whiten(adv, mask);
        var oracle = _oracle is null ? Array.Empty<double>() : texts.Select((t, i) => _oracle(prompts[i], t)).ToArray();
        return new Rollout
        {
            Prompts = prompts, Queries = queries, Responses = responses, Texts = texts, Mask = mask, OldLogp = oldLogp, RefLogp = refLogp, Values = values,
            Advantages = adv, Returns = ret, Scores = scores, Oracle = oracle,
        };
    }

    /// <summary>PPO epochs over minibatches of a rollout; returns the mean training metrics.</summary>
    public Dictionary<string, double> Update(Rollout r, long iteration)
    {
        var sums = new Dictionary<string, double>();
        int n = r.Queries.Count, updates = 0;
        long trainTokens = 0;
        var rng = new Random((int)(TokenStream.Mix((ulong)_c.Seed, (ulong)iteration, MinibatchOrderSalt) & 0x7fffffff));
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
                var batch = Layout(idx.Select(i => r.Queries[i]).ToList(), idx.Select(i => r.Responses[i]).ToList());
                var mask = batch.TargetMask;
                int tr = (int)mask.shape[1];
                Tensor Minibatch(Tensor x) => x.index_select(0, sel).narrow(1, 0, tr);
                var oldLogp = Minibatch(r.OldLogp); var adv = Minibatch(r.Advantages); var ret = Minibatch(r.Returns); var oldV = Minibatch(r.Values);

                _policy.eval(); // no dropout: the rollout's log-probabilities came from this same deterministic forward pass
                var (logp, ent) = ResponseLogp(_policy, batch, true);
                var (pg, clipFrac) = Losses.PpoPolicyLoss(logp, oldLogp, adv, mask, _c.ClipRange);
                var entropy = Losses.MaskedMean(ent!, mask);
                var policyLoss = pg - _c.EntropyCoef * entropy;
                double ptx = double.NaN;
                if (_c.PtxCoef > 0 && _ptxTrain is not null)
                {
                    var ptxLoss = PtxLoss(iteration * PtxBatchesPerIteration + updates);
                    policyLoss = policyLoss + _c.PtxCoef * ptxLoss;
                    ptx = ptxLoss.item<float>();
                }
                _policyOpt.zero_grad();
                policyLoss.backward();
                if (_c.GradClip > 0) nn.utils.clip_grad_norm_(_policy.parameters(), _c.GradClip);
                _policyOpt.step();

                _value.eval();
                var v = ResponseValues(_value, batch);
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
                trainTokens += batch.Input.numel();
                if (approxKl > _c.EarlyStopKl) { stop = true; break; } // KL spike: stop updating on this rollout
            }
        }
        var m = sums.ToDictionary(kv => kv.Key, kv => kv.Value / updates);
        m["ppo_updates"] = updates;
        m["train_tokens"] = trainTokens;
        m["early_stopped"] = stop ? 1 : 0;
        return m;
    }

    /// <summary>PPO-ptx: the policy's next-token loss on pretraining batch <paramref name="batch"/> (random training windows).</summary>
    Tensor PtxLoss(long batch)
    {
        int bt = Math.Min(Math.Min(_c.PtxLength, _policy.Context), _ptxTrain!.Tokens.Length - 2);
        var offs = _ptxTrain.RandomOffsets(_c.Seed, batch, 0, _c.PtxBatch, bt);
        var (x, y) = CausalBatch.Windows(_ptxTrain, offs, bt, _device);
        return Losses.CrossEntropy(_policy.call(x), y);
    }

    /// <summary>
    /// One PPO iteration: a rollout on <paramref name="prompts"/>, the updates on it, then β adapted to the
    /// rollout's KL. Returns the rollout's statistics, the update's metrics, throughputs and the β it ran with.
    /// </summary>
    public Dictionary<string, double> Step(IReadOnlyList<ChatPrompt> prompts, long iteration)
    {
        using var scope = NewDisposeScope();
        var sw = Stopwatch.StartNew();
        var r = SampleRollout(prompts, RolloutSeed(_c.Seed, iteration));
        var rolloutSeconds = sw.Elapsed.TotalSeconds;
        long tokens = r.Responses.Sum(x => (long)x.Length);
        var m = RolloutStats(r);
        foreach (var (k, v) in Update(r, iteration)) m[k] = v;
        var updateSeconds = sw.Elapsed.TotalSeconds - rolloutSeconds;
        m["rollout_tokens_per_second"] = tokens / Math.Max(1e-9, rolloutSeconds);
        m["train_tokens_per_second"] = m["train_tokens"] / Math.Max(1e-9, updateSeconds);
        m.Remove("train_tokens");
        m["beta"] = Beta;
        Beta = AdaptBeta(Beta, m["kl"], _c.AdaptiveKl, _c.RolloutBatch);
        return m;
    }

    static long RolloutSeed(long seed, long iteration) => (long)(TokenStream.Mix((ulong)seed, (ulong)iteration) & 0x7fffffffffff);

    /// <summary>Held-out metrics: oracle and RM scores of sampled responses, KL to the reference, pretraining loss.</summary>
    public Dictionary<string, double> Evaluate(long seed)
    {
        using var scope = NewDisposeScope();
        var r = SampleRollout(_evalPrompts, seed);
        var m = RolloutStats(r);
        if (KindOf is not null && r.Oracle.Length > 0)
            foreach (var g in Enumerable.Range(0, r.Prompts.Count).GroupBy(i => KindOf(r.Prompts[i])).Where(g => g.Key is not null))
                m[$"oracle_{g.Key}"] = g.Average(i => r.Oracle[i]);
        m = m.ToDictionary(kv => "eval_" + kv.Key, kv => kv.Value);
        if (_ptxVal is not null) m["eval_pretrain_loss"] = Perplexity.PretrainLoss(_policy, _ptxVal);
        return m;
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
            m["oracle_score_sd"] = Stats.SampleStd(r.Oracle);
        }
        return m;
    }

    /// <summary>
    /// The adaptive KL controller of Ziegler et al. (2019): β ← β·(1 + clip((KL − target)/target, ±0.2)·n/horizon),
    /// n = rollouts per iteration. A KL above the target raises β, below lowers it; no controller keeps β.
    /// </summary>
    public static double AdaptBeta(double beta, double kl, AdaptiveKlConfig? controller, int rolloutSize)
    {
        if (controller is null) return beta;
        double err = Math.Clamp((kl - controller.Target) / controller.Target, -AdaptiveKlMaxError, AdaptiveKlMaxError);
        return beta * (1 + err * rolloutSize / controller.Horizon);
    }

    /// <summary>The policy (Hugging Face layout) with the value model in value/.</summary>
    void SaveModel(string dir)
    {
        HfCheckpoint.Write(dir, _policy, _tok, configExtra: new System.Text.Json.Nodes.JsonObject
        {
            ["chatforge"] = new System.Text.Json.Nodes.JsonObject { ["stage"] = "ppo", ["base_model"] = _c.Model, ["reward_model"] = _c.Reward },
        });
        _value.Save(Path.Combine(dir, ValueDir), _tok, stage: "value");
    }

    const string ValueDir = "value";

    /// <summary>The policy at the end of round <paramref name="round"/> (1-based) of an iterated run, beside model/ (which holds the last round's).</summary>
    public static string RoundPolicyDir(string runRoot, int round) => Path.Combine(runRoot, $"policy_round{round}");

    /// <summary>Writes the policy of a finished round (Hugging Face layout), whole or not at all; a resumed run finds it written.</summary>
    void SaveRoundPolicy(RunDirectory run, int round)
    {
        var dir = RoundPolicyDir(run.Root, round);
        if (Directory.Exists(dir)) return;
        var tmp = dir + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        HfCheckpoint.Write(tmp, _policy, _tok, configExtra: new System.Text.Json.Nodes.JsonObject
        {
            ["chatforge"] = new System.Text.Json.Nodes.JsonObject { ["stage"] = "ppo", ["round"] = round, ["base_model"] = _c.Model },
        });
        Directory.Move(tmp, dir);
    }

    /// <summary>
    /// model/ with β and the round of the reward model in use in the training state, so a resumed run
    /// continues with both. The round is recorded only once its reward model is complete.
    /// </summary>
    void SaveCheckpoint(RunDirectory run, long iteration, double elapsed)
    {
        var st = new TrainingState
        {
            Step = iteration, Seed = _c.Seed, ElapsedSeconds = elapsed,
            Extra = new Dictionary<string, double> { ["beta"] = Beta, ["round"] = Round },
        };
        RunCheckpoint.Save(run, SaveModel, st, _policyOpt, _valueOpt);
    }

    // ---- The run: setup, then per iteration (round step when a round starts) rollout + update, then the summary ----

    /// <summary>The rollout prompts, the held-out prompts, the oracle and (with the demo data) the corpora.</summary>
    sealed record PromptSet(List<ChatPrompt> Train, List<ChatPrompt> Eval, Func<ChatPrompt, string, double>? Oracle, Corpora? Corpora, Func<ChatPrompt, string?>? KindOf = null);

    static Func<ChatPrompt, string, double> Sentiment(Corpora corpora)
    {
        var o = SentimentOracle.FromCorpora(corpora);
        return (_, response) => o.Score(response);
    }

    /// <summary>The demo's sentiment prompts (held-out corpus sentence openings), or {"prompt"} files with a seeded tenth held out.</summary>
    static PromptSet LoadPrompts(PpoConfig c, Action<string>? log)
    {
        if (c.Task == "hhh")
        {
            // The alignment task: training prompts of every family; held-out prompts of every kind, in equal numbers.
            var corpora = Corpora.OpenOrFetch(c.Cache, log);
            var suite = DemoSuite.Build(corpora);
            var tasks = AlignmentTasks.Build(suite);
            var byPrompt = tasks.GroupBy(p => p.Input).ToDictionary(g => g.Key, g => g.First());
            var oracle = new AlignmentOracle(c.Alignment, suite.States);
            var heldOut = AlignmentTasks.EvalSet(tasks, Math.Max(1, c.EvalPrompts / 4)).Select(p => p.Input).ToList();
            return new PromptSet(AlignmentTasks.Balanced(tasks.Where(p => !p.HeldOut), c.Seed).Select(p => p.Input).ToList(), heldOut,
                (p, response) => oracle.Score(byPrompt[p], response), corpora, p => byPrompt.TryGetValue(p, out var a) ? a.Kind : null);
        }
        if (c.Prompts.Count == 0)
        {
            var corpora = Corpora.OpenOrFetch(c.Cache, log);
            var (prompts, evalPrompts) = SentimentPrompts.Build(corpora);
            return new PromptSet(prompts.Select(p => (ChatPrompt)p).ToList(), evalPrompts.Take(c.EvalPrompts).Select(p => (ChatPrompt)p).ToList(), Sentiment(corpora), corpora);
        }
        // A prompt is a string, or (with the chat template) a list of messages ending in the user's: TRL's conversational format.
        var all = c.Prompts.SelectMany(f => Jsonl.Read(f).Select(r =>
        {
            if (!r.Row.TryGetProperty("prompt", out var e)) throw new ChatForgeException($"{f}:{r.Line}: missing field 'prompt'");
            var (prompt, chat) = Preferences.ReadPrompt(e, $"{f}:{r.Line}");
            if (chat && !c.Chat) throw new ChatForgeException($"{f}:{r.Line}: 'prompt' is a list of messages; conversational prompts need the chat template (--chat)");
            return prompt;
        })).ToList();
        if (all.Count < 2) throw new ChatForgeException("need at least two prompts");
        var eval = all.Where(p => HashSplit.Unit(c.Seed, "ppo:" + p.Key) < HeldOutPromptFraction).Take(c.EvalPrompts).ToList();
        if (eval.Count == 0) eval.Add(all[^1]);
        var train = all.Except(eval).ToList();
        if (!Corpora.IsFetched(c.Cache)) return new PromptSet(train, eval, null, null);
        var fetched = Corpora.Open(c.Cache);
        return new PromptSet(train, eval, Sentiment(fetched), fetched);
    }

    /// <summary>Fraction of user prompts held out for evaluation.</summary>
    const double HeldOutPromptFraction = 0.1;

    /// <summary>
    /// The demo corpora's documents split as pretraining split them: all the training ones for PPO-ptx, the
    /// validation ones for the held-out pretraining loss. The split is pretraining's split.json, from
    /// <see cref="PpoConfig.Pretrain"/> or else found from the SFT model (<see cref="Pretrainer.FindSplit"/>);
    /// without one, the default pretraining config's split is assumed (and said so).
    /// </summary>
    public static (List<Document> Train, List<Document> Val) PretrainDocuments(PpoConfig c, Corpora corpora, Action<string>? log = null)
    {
        var docs = TextCorpus.Load(new[] { corpora.MobyDick, corpora.Sotu });
        var found = Pretrainer.FindSplit(c.Pretrain ?? c.Model);
        if (found is null && c.Pretrain is not null)
            throw new ChatForgeException($"{c.Pretrain}: no {PretrainSplit.FileName} there (pretrain: a pretraining run, one of its checkpoints, or its split.json)");
        if (found is null)
            log?.Invoke($"no {PretrainSplit.FileName} beside {c.Model} or its base models: assuming the default pretraining split (seed {PretrainSplit.DefaultSeed}, val_fraction {PretrainSplit.DefaultValFraction})");
        var (train, val) = (found?.Split ?? PretrainSplit.Default).Apply(docs);
        log?.Invoke($"pretraining text: {train.Count} training documents (PPO-ptx), {val.Count} held out{(found is { } f ? $", split from {f.File}" : "")}");
        return (train, val);
    }

    /// <summary>Pretraining text for PPO-ptx (training split) and the held-out pretraining loss (validation split).</summary>
    static (TokenStream? Train, TokenStream? Val) LoadPretrainText(PpoConfig c, Corpora? corpora, ITokenizer tok, Action<string>? log)
    {
        if (corpora is null) return (null, null);
        var (tr, va) = PretrainDocuments(c, corpora, log);
        return (c.PtxCoef > 0 ? TokenStream.Encode(tr, tok) : null, TokenStream.Encode(va, tok));
    }

    /// <summary>The reward model of round <paramref name="round"/> (0: the given one; later rounds retrain it inside the run).</summary>
    static string RoundRewardModel(PpoConfig c, RunDirectory run, int round) => round == 0 ? c.Reward : Path.Combine(RoundRewardDir(run, round), "model");

    static string RoundRewardDir(RunDirectory run, int round) => Path.Combine(run.Root, $"round{round}", "reward");

    /// <summary>A round's reward model is complete once its run wrote summary.json (round 0's is given).</summary>
    static bool RoundRewardComplete(RunDirectory run, int round) =>
        round == 0 || File.Exists(Path.Combine(RoundRewardDir(run, round), "summary.json"));

    /// <summary>
    /// Iterated RLHF, the start of a later round: new rankings from the current policy, a retrained reward
    /// model, then more PPO. Safe to kill at any moment: the checkpoint written first still records the
    /// previous round, the reward-model run resumes (or is found complete), and only then does the round
    /// change; the next checkpoint records it.
    /// </summary>
    /// <summary>
    /// The rankings of the rounds before <paramref name="round"/>: the initial reward model's (rankings.jsonl in its run
    /// directory, when it was trained by `chatforge reward`) and each earlier round's.
    /// </summary>
    List<string> EarlierRankings(RunDirectory run, int round)
    {
        var files = new List<string>();
        if (Path.GetDirectoryName(Path.GetFullPath(_c.Reward)) is { } rewardRun && File.Exists(Path.Combine(rewardRun, "rankings.jsonl")))
            files.Add(Path.Combine(rewardRun, "rankings.jsonl"));
        for (int r = 1; r < round; r++)
            if (File.Exists(Path.Combine(RoundRewardDir(run, r), "rankings.jsonl"))) files.Add(Path.Combine(RoundRewardDir(run, r), "rankings.jsonl"));
        return files;
    }

    void StartRound(RunDirectory run, int round, long iteration, double elapsed, Action<string>? log, CancellationToken cancel)
    {
        SaveCheckpoint(run, iteration, elapsed); // the policy that collects the rankings (collectWith), and a resume point
        if (!RoundRewardComplete(run, round))
        {
            log?.Invoke($"round {round + 1}: collecting rankings with the current policy and retraining the reward model");
            var rc = new RewardConfig
            {
                Model = _c.Model, Cache = _c.Cache, Collect = _c.RoundCollect with { Seed = _c.Seed + round, Alignment = _c.Alignment }, Seed = _c.Seed + round,
                Deterministic = _c.Deterministic, Device = _c.Device, Threads = _c.Threads,
                Optim = new RewardConfig().Optim with { MaxSteps = _c.RoundRewardSteps, EvalInterval = 0, CheckpointInterval = 0 },
                EarlierRankings = EarlierRankings(run, round),
            };
            RewardTrainer.Run(rc, RoundRewardDir(run, round), resume: true, log, null, cancel, collectWith: run.ModelDir);
        }
        ReplaceRewardModel(RewardCheckpoint.Load(RoundRewardModel(_c, run, round), _device).Model);
        Round = round;
        // The reward-model run reseeded the global RNG; reseed it by the round, so what follows does not depend on
        // whether the reward model was trained in this process or found complete on resume.
        TorchRuntime.Seed(_c.Seed + round);
    }

    public static Dictionary<string, object?> Run(PpoConfig c, string outDir, bool resume, Action<string>? log = null,
        Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        c.Validate("ppo config");
        if (c.Task == "hhh") c = c with { Chat = true };   // the alignment task's prompts are user messages
        var (run, device, resuming) = RunDirectory.Begin(c, outDir, resume);
        var (ppo, prompts, state) = Setup(c, run, device, resuming, log);

        long startIter = state.Step;
        long total = (long)c.Iterations * c.Rounds;
        var clock = new RunClock(state.ElapsedSeconds, startIter);
        using var metricsLog = new MetricsLog(run, resuming ? startIter : -1);
        var sampler = new EpochSampler(prompts.Count, c.Seed, c.RolloutBatch);
        long evalSeed = (long)(TokenStream.Mix((ulong)c.Seed, EvalSeedSalt) & 0x7fffffff); // the same held-out samples every evaluation
        Dictionary<string, double> lastEval = new();
        Dictionary<string, double>? firstEval = null;

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
            if (round > ppo.Round) ppo.StartRound(run, round, it, clock.TotalSeconds, log, cancel);
            var m = ppo.Step(sampler.Indices(it, 0, c.RolloutBatch).Select(i => prompts[i]).ToList(), it);
            m["round"] = round + 1;
            long done = it + 1;
            bool last = done == total;
            bool roundEnd = c.Rounds > 1 && done % c.Iterations == 0;   // each round is evaluated and its policy kept
            if (last || roundEnd || (c.EvalInterval > 0 && done % c.EvalInterval == 0))
            {
                lastEval = ppo.Evaluate(evalSeed);
                foreach (var (k, v) in lastEval) m[k] = v;
            }
            m["elapsed_s"] = clock.TotalSeconds;
            metricsLog.Write(done, m);
            RunClock.TrimAfter(done);
            if (roundEnd && !last) ppo.SaveRoundPolicy(run, (int)(done / c.Iterations));
            if (last || (c.CheckpointInterval > 0 && done % c.CheckpointInterval == 0))
                ppo.SaveCheckpoint(run, done, clock.TotalSeconds);
            progress?.Invoke(clock.Progress(done, total, m.GetValueOrDefault("rm_score"), m["rollout_tokens_per_second"],
                lastEval.Count > 0 && m.ContainsKey("eval_kl") ? lastEval : null));
        }
        if (startIter >= total) lastEval = ppo.Evaluate(evalSeed);
        return WriteSummary(run, c, ppo.Beta, firstEval, lastEval, total, clock.TotalSeconds);
    }

    /// <summary>
    /// The four models (from the run's checkpoint when resuming), the prompts and pretraining text, the
    /// trainer, and the state to continue from (optimizers, RNG and β restored).
    /// </summary>
    static (PpoTrainer Trainer, List<ChatPrompt> Prompts, TrainingState State) Setup(PpoConfig c, RunDirectory run, Device device, bool resuming, Action<string>? log)
    {
        var ps = LoadPrompts(c, log);
        var (policy, tok, _) = HfCheckpoint.Load(resuming ? run.ModelDir : c.Model, device);
        var (reference, _, _) = HfCheckpoint.Load(c.Model, device);
        int startRound = resuming ? (int)TrainingState.ReadOnly(run.StateDir).Extra.GetValueOrDefault("round") : 0;
        while (!RoundRewardComplete(run, startRound)) startRound--; // a checkpoint of an earlier version may name an unfinished one: retrain it
        var (rm, _) = RewardCheckpoint.Load(RoundRewardModel(c, run, startRound), device);
        RewardModel value;
        if (resuming) (value, _) = RewardCheckpoint.Load(Path.Combine(run.ModelDir, ValueDir), device);
        else value = InitialValueModel(c, device);
        var (ptxTrain, ptxVal) = LoadPretrainText(c, ps.Corpora, tok, log);

        var ppo = new PpoTrainer(c, policy, reference, rm, value, tok, ps.Train, ps.Eval, ptxTrain, ptxVal, ps.Oracle) { Round = startRound, KindOf = ps.KindOf };
        if (!resuming) return (ppo, ps.Train, new TrainingState { Seed = c.Seed });
        var st = RunCheckpoint.Load(run, ppo._policyOpt, ppo._valueOpt);
        ppo.Beta = st.Extra.GetValueOrDefault("beta", c.Beta);
        log?.Invoke($"resuming PPO at iteration {st.Step} (round {startRound + 1}), β = {ppo.Beta:F4}");
        return (ppo, ps.Train, st);
    }

    /// <summary>
    /// The value model at the start: the SFT backbone with a zero head (value_init "policy"), or a copy of the
    /// reward model (value_init "reward") that predicts the normalised score (raw − mean)/sd the rewards are
    /// built from, not the raw score: its head is divided by sd and the mean becomes an offset of mean/sd
    /// (score.weight has no bias), so training moves the head on the rewards' scale from the first step.
    /// </summary>
    public static RewardModel InitialValueModel(PpoConfig c, Device? device = null)
    {
        if (c.ValueInit != "reward") return new RewardModel(HfCheckpoint.Load(c.Model, device).Model);
        var (value, _) = RewardCheckpoint.Load(c.Reward, device);
        using (no_grad()) value.ScoreWeight.div_(value.Std);
        value.Mean /= value.Std;
        value.Std = 1;
        return value;
    }

    /// <summary>The plots and summary.json: held-out scores, KL and pretraining loss after PPO and before it (sft_*).</summary>
    static Dictionary<string, object?> WriteSummary(RunDirectory run, PpoConfig c, double beta, Dictionary<string, double>? firstEval,
        Dictionary<string, double> lastEval, long iterations, double wallSeconds)
    {
        var rows = MetricsLog.Read(run.MetricsPath);
        List<(double, double)> Series(string key) => rows.Where(x => x.ContainsKey(key)).Select(x => (x["step"], x[key])).ToList();
        Plots.Lines(run.PathOf("ppo_reward.png"), "PPO: reward-model and oracle scores", "iteration", "mean score", new[]
        {
            ("RM score (rollouts)", Series("rm_score")),
            ("oracle (rollouts)", Series("oracle_score")),
            ("oracle (held-out)", Series("eval_oracle_score")),
        });
        Plots.Lines(run.PathOf("ppo_kl.png"), "PPO: KL to the SFT model", "iteration", "KL (nats per response)", new[]
        {
            ("KL (rollouts)", Series("kl")),
            ("KL (held-out)", Series("eval_kl")),
        });
        var first = firstEval ?? rows.FirstOrDefault(x => x["step"] == 0) ?? new Dictionary<string, double>();
        // The oracle's mean held-out score: the lexicon's sentiment, or (task hhh) the alignment oracle's score.
        string o = c.Task == "hhh" ? "oracle_alignment" : "oracle_sentiment";
        var summary = new Dictionary<string, object?>
        {
            ["task"] = c.Task,
            [o] = lastEval.GetValueOrDefault("eval_oracle_score", double.NaN),
            [o + "_sd"] = lastEval.GetValueOrDefault("eval_oracle_score_sd", double.NaN),
            ["rm_score"] = lastEval.GetValueOrDefault("eval_rm_score", double.NaN),
            ["kl_to_sft"] = lastEval.GetValueOrDefault("eval_kl", double.NaN),
            ["pretrain_val_loss"] = lastEval.GetValueOrDefault("eval_pretrain_loss", double.NaN),
            ["sft_" + o] = first.GetValueOrDefault("eval_oracle_score", double.NaN),
            ["sft_" + o + "_sd"] = first.GetValueOrDefault("eval_oracle_score_sd", double.NaN),
            ["sft_rm_score"] = first.GetValueOrDefault("eval_rm_score", double.NaN),
            ["sft_pretrain_val_loss"] = first.GetValueOrDefault("eval_pretrain_loss", double.NaN),
            ["beta_final"] = beta,
            ["ptx_coef"] = c.PtxCoef,
            ["iterations"] = iterations,
            ["rounds"] = c.Rounds,
            ["wall_seconds"] = wallSeconds,
        };
        double gain = (double)summary[o]! - (double)summary["sft_" + o]!;
        summary["oracle_gain"] = gain;
        summary["oracle_gain_in_sft_sd"] = gain / (double)summary["sft_" + o + "_sd"]!;
        // Per kind of held-out prompt (task hhh), before and after: "harmful", "benign", "unknowable", "knowable".
        Dictionary<string, double?> ByKind(Dictionary<string, double> m) => m.Where(kv => kv.Key.StartsWith("eval_oracle_", StringComparison.Ordinal) && !kv.Key.StartsWith("eval_oracle_score", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key["eval_oracle_".Length..], kv => double.IsFinite(kv.Value) ? kv.Value : (double?)null);
        if (ByKind(lastEval).Count > 0)
        {
            summary["oracle_by_kind"] = ByKind(lastEval);
            summary["sft_oracle_by_kind"] = ByKind(first);
        }
        if (c.Rounds > 1)
        {
            // Each round's held-out evaluation at its last iteration (the sampled evaluation above; the report adds greedy answers).
            var perRound = new List<Dictionary<string, object?>>();
            for (int r = 1; r <= c.Rounds; r++)
                if (rows.LastOrDefault(x => x["step"] == (double)r * c.Iterations && x.ContainsKey("eval_kl")) is { } e)
                    perRound.Add(new Dictionary<string, object?>
                    {
                        ["round"] = r, [o] = e.GetValueOrDefault("eval_oracle_score", double.NaN), ["rm_score"] = e.GetValueOrDefault("eval_rm_score", double.NaN),
                        ["kl_to_sft"] = e["eval_kl"], ["oracle_by_kind"] = ByKind(e),
                    });
            summary["by_round"] = perRound;
        }
        run.WriteSummary(summary);
        return summary;
    }
}
