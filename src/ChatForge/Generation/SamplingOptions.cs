namespace ChatForge.Generation;

/// <summary>How to pick each next token and when to stop.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>0 means greedy (argmax); otherwise logits are divided by it before softmax.</summary>
    public double Temperature { get; init; } = 0.8;
    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p (1 = off).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Seed of the sampling generator (null: nondeterministic).</summary>
    public long? Seed { get; init; }
    /// <summary>Stop when the completion contains one of these; the completion is cut before it.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = Array.Empty<string>();
    /// <summary>Token ids that end a completion (not included in it). Every special token of the tokenizer
    /// (&lt;|endoftext|&gt;, &lt;|im_start|&gt;, &lt;|im_end|&gt;) is always one, unless <see cref="IgnoreEos"/>.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = Array.Empty<int>();
    public bool IgnoreEos { get; init; }

    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ChatForgeException($"--max-new-tokens must be ≥ 0, got {MaxNewTokens}");
        if (Temperature < 0 || !double.IsFinite(Temperature)) throw new ChatForgeException($"--temperature must be ≥ 0, got {Temperature}");
        if (TopK < 0) throw new ChatForgeException($"--top-k must be ≥ 0, got {TopK}");
        if (TopP is <= 0 or > 1) throw new ChatForgeException($"--top-p must be in (0, 1], got {TopP}");
    }
}

/// <summary>
/// One completion: its tokens (stop token excluded), text, why it ended ("stop", "eos", "length", or "cancelled" when its
/// caller gave up), and whether the prompt was cut to fit; with log-probabilities asked for, one per token.
/// </summary>
public sealed record Completion(int[] Tokens, string Text, string FinishReason, int PromptTokens, bool PromptTruncated, int? StopToken = null,
                                IReadOnlyList<TokenLogprob>? Logprobs = null);

/// <summary>A generated token's log-probability under the model (before temperature), with the most likely alternatives.</summary>
public sealed record TokenLogprob(int Token, string Text, double Logprob, IReadOnlyList<(int Token, string Text, double Logprob)> Top);

/// <summary>
/// One row of a batch whose rows differ (a server's concurrent requests): its prompt, its own options and sampling seed,
/// <paramref name="OnText"/> called with each piece of text as soon as it is final (text that might begin a stop string
/// is held back until it does not), how many alternatives to report per token (<paramref name="TopLogprobs"/>; −1: no
/// log-probabilities), a token that ends the row early, and <paramref name="OnLogprobs"/>, called just before
/// <paramref name="OnText"/> (or alone, at the end) with the log-probabilities of the tokens sampled since its last call.
/// </summary>
public sealed record RowRequest(int[] Prompt, SamplingOptions Options, Action<string>? OnText = null, int TopLogprobs = -1,
                                CancellationToken Cancel = default, Action<IReadOnlyList<TokenLogprob>>? OnLogprobs = null);
