using System.Security.Cryptography;
using System.Text;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// Which corpus documents pretraining held out for validation, as pretraining recorded it in split.json
/// (in its run directory and in every checkpoint it writes). Later stages keep to it: PPO-ptx trains on
/// the training documents and measures the held-out pretraining loss on the validation ones, and the SFT
/// demo's plain-text passages come from the training documents, whatever seed pretraining ran with.
/// </summary>
public sealed record PretrainSplit
{
    public const string FileName = "split.json";
    /// <summary>The split of the default pretraining config (seed 1337, val_fraction 0.05): assumed for a model without split.json.</summary>
    public const long DefaultSeed = 1337;
    public const double DefaultValFraction = 0.05;

    /// <summary>The seed and fraction of <see cref="TextCorpus.Split"/> that made the split.</summary>
    public long Seed { get; init; } = DefaultSeed;
    public double ValFraction { get; init; } = DefaultValFraction;
    public int TrainDocuments { get; init; }
    public int ValDocuments { get; init; }
    /// <summary>SHA-256 (hex) of each validation document's text: the record itself, independent of how the split was drawn.</summary>
    public List<string> ValSha256 { get; init; } = new();

    public static PretrainSplit Default => new();

    /// <summary>The record of a split that <see cref="TextCorpus.Split"/> made with <paramref name="seed"/> and <paramref name="valFraction"/>.</summary>
    public static PretrainSplit Of(IReadOnlyCollection<Document> train, IReadOnlyCollection<Document> val, long seed, double valFraction) => new()
    {
        Seed = seed, ValFraction = valFraction, TrainDocuments = train.Count, ValDocuments = val.Count,
        ValSha256 = val.Select(d => Sha256(d.Text)).Distinct().ToList(),
    };

    /// <summary>
    /// Splits <paramref name="docs"/> as pretraining did: the documents it held out are validation, the rest
    /// training. Documents pretraining never saw (no recorded hash matches) are split by the recorded seed and
    /// fraction, as pretraining would have split them.
    /// </summary>
    public (List<Document> Train, List<Document> Val) Apply(IReadOnlyList<Document> docs)
    {
        var held = ValSha256.ToHashSet(StringComparer.Ordinal);
        var val = held.Count == 0 ? new List<Document>() : docs.Where(d => held.Contains(Sha256(d.Text))).ToList();
        if (val.Count == 0) return TextCorpus.Split(docs, ValFraction, Seed);
        var valSet = val.ToHashSet();
        return (docs.Where(d => !valSet.Contains(d)).ToList(), val);
    }

    public void Write(string dir) => AtomicFile.WriteAllText(Path.Combine(dir, FileName), Json.Serialize(this));

    public static PretrainSplit Read(string path) => Json.LoadFile<PretrainSplit>(path);

    static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
