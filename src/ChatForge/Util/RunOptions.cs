namespace ChatForge.Util;

/// <summary>
/// How a run runs, as opposed to what it trains: the options every training config shares (and the
/// CLI's `--seed`, `--deterministic`, `--device`, `--threads`, `--cache` set once for every verb).
/// JSON keys: <c>seed</c>, <c>deterministic</c>, <c>device</c>, <c>threads</c>, <c>cache</c>.
/// </summary>
public abstract record RunOptions
{
    /// <summary>Seeds weights, data order, dropout and sampling.</summary>
    public long Seed { get; init; } = 1337;
    /// <summary>Bit-identical runs (one intra-op thread).</summary>
    public bool Deterministic { get; init; }
    /// <summary>"auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".</summary>
    public string Device { get; init; } = "auto";
    /// <summary>Intra-op threads (null: one per core).</summary>
    public int? Threads { get; init; }
    /// <summary>Data cache for the demo corpora (null: the default cache).</summary>
    public string? Cache { get; init; }

    /// <summary><paramref name="config"/> with the run options of this one (a pipeline hands its own to every stage).</summary>
    public T AppliedTo<T>(T config) where T : RunOptions => (T)((RunOptions)config with
    {
        Seed = Seed, Deterministic = Deterministic, Device = Device, Threads = Threads, Cache = Cache,
    });
}
