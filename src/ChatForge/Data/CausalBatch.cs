using static TorchSharp.torch;

namespace ChatForge.Data;

/// <summary>Token ids and which of them are targets: <c>Train[i]</c> means token i is predicted and scored.</summary>
public record Segment(int[] Ids, bool[] Train)
{
    /// <summary>Every token after the first is a target (language modelling).</summary>
    public static Segment All(int[] ids) => new(ids, ids.Select((_, i) => i > 0).ToArray());

    /// <summary>The tokens from <paramref name="start"/> on are targets (a response after its prompt).</summary>
    public static Segment From(int[] ids, int start) => new(ids, ids.Select((_, i) => i >= start && i > 0).ToArray());
}

/// <summary>A batch row: one segment, or several packed back to back.</summary>
public sealed record PackedRow(IReadOnlyList<Segment> Segments)
{
    public PackedRow(Segment single) : this(new[] { single }) { }
    public int Length => Segments.Sum(s => s.Ids.Length);
}

/// <summary>
/// A next-token batch, the one place where the label shift, padding, positions and the attention mask
/// are decided: input position t predicts <see cref="Targets"/>[t], the token at t+1, where that token
/// is a target, else <see cref="IgnoreIndex"/>. Rows are right-padded; packed rows get positions that
/// restart per segment and a block-diagonal causal mask (null for unpacked rows: plain causal attention,
/// positions 0, 1, …).
/// </summary>
/// <param name="Input">(B, T) token ids</param>
/// <param name="Targets">(B, T) the next token, or <see cref="IgnoreIndex"/></param>
/// <param name="Positions">(B, T) position ids, or null</param>
/// <param name="Mask">(B, 1, T, T) boolean attention mask (true = may attend), or null</param>
/// <param name="TargetIndex">(B, R) the input positions whose targets are scored, in order, left-aligned per row (R: the most targets of a row)</param>
/// <param name="TargetTokens">(B, R) those targets' token ids (0 past a row's last)</param>
/// <param name="TargetMask">(B, R) 1 for a target, 0 past a row's last (float)</param>
public sealed record CausalBatch(Tensor Input, Tensor Targets, Tensor? Positions, Tensor? Mask,
                                 Tensor TargetIndex, Tensor TargetTokens, Tensor TargetMask)
{
    /// <summary>Target value that takes no part in a loss (prompt tokens in SFT, padding).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>(B, T) true where a target is scored.</summary>
    public Tensor LossMask => Targets.ne(IgnoreIndex);

    /// <summary>Builds the batch of <paramref name="rows"/>, right-padded with <paramref name="padId"/>.</summary>
    public static CausalBatch Build(IReadOnlyList<PackedRow> rows, int padId, Device device)
    {
        int t = Math.Max(1, rows.Max(r => r.Length) - 1);
        int b = rows.Count;
        var x = new long[b * t];
        var y = new long[b * t];
        var pos = new long[b * t];
        var seg = new long[b * t];
        bool packed = rows.Any(r => r.Segments.Count > 1);
        for (int r = 0; r < b; r++)
        {
            Array.Fill(x, padId, r * t, t);
            Array.Fill(y, IgnoreIndex, r * t, t);
            Array.Fill(seg, -1 - r, r * t, t); // padding: a segment of its own
            int off = 0, segId = 0;
            foreach (var s in rows[r].Segments)
            {
                for (int i = 0; i < s.Ids.Length && off + i < t; i++)
                {
                    x[r * t + off + i] = s.Ids[i];
                    pos[r * t + off + i] = i;
                    seg[r * t + off + i] = segId;
                    // The last token of a segment predicts nothing (the next segment is unrelated).
                    if (i + 1 < s.Ids.Length && s.Train[i + 1]) y[r * t + off + i] = s.Ids[i + 1];
                }
                off += s.Ids.Length;
                segId++;
            }
        }
        var input = tensor(x, new long[] { b, t }, device: device);
        var targets = tensor(y, new long[] { b, t }, device: device);
        var (index, tokens, mask) = Compact(y, b, t, device);
        if (!packed) return new CausalBatch(input, targets, null, null, index, tokens, mask);
        var mask2d = AttentionMasks.BlockDiagonalCausal(tensor(seg, new long[] { b, t }, device: device));
        return new CausalBatch(input, targets, tensor(pos, new long[] { b, t }, device: device), mask2d, index, tokens, mask);
    }

    /// <summary>Each row's scored positions and their targets, left-aligned: (B, R) index, tokens and a float mask.</summary>
    static (Tensor Index, Tensor Tokens, Tensor Mask) Compact(long[] y, int b, int t, Device device)
    {
        var perRow = Enumerable.Range(0, b).Select(r => Enumerable.Range(0, t).Where(j => y[r * t + j] != IgnoreIndex).ToList()).ToList();
        int width = Math.Max(1, perRow.Max(p => p.Count));
        var index = new long[b * width];
        var tokens = new long[b * width];
        var mask = new float[b * width];
        for (int r = 0; r < b; r++)
            for (int k = 0; k < perRow[r].Count; k++)
            {
                index[r * width + k] = perRow[r][k];
                tokens[r * width + k] = y[r * t + perRow[r][k]];
                mask[r * width + k] = 1;
            }
        var shape = new long[] { b, width };
        return (tensor(index, shape, device: device), tensor(tokens, shape, device: device), tensor(mask, shape, device: device));
    }

    /// <summary>One segment per row.</summary>
    public static CausalBatch Build(IEnumerable<Segment> rows, int padId, Device device) =>
        Build(rows.Select(s => new PackedRow(s)).ToList(), padId, device);

    /// <summary>Greedy first-fit packing into rows of at most <paramref name="maxLen"/> tokens, in the given order.</summary>
    public static List<PackedRow> Pack(IEnumerable<Segment> segments, int maxLen)
    {
        var rows = new List<PackedRow>();
        var cur = new List<Segment>();
        int len = 0;
        foreach (var e in segments)
        {
            if (len + e.Ids.Length > maxLen && cur.Count > 0) { rows.Add(new PackedRow(cur)); cur = new(); len = 0; }
            cur.Add(e); len += e.Ids.Length;
        }
        if (cur.Count > 0) rows.Add(new PackedRow(cur));
        return rows;
    }

    /// <summary>Right-pads whole sequences into (N, T) ids and each one's last real index (N): the input of a sequence-level head (reward, value).</summary>
    public static (Tensor Ids, Tensor Last) Sequences(IReadOnlyList<int[]> seqs, int padId, Device device)
    {
        int t = seqs.Max(s => s.Length);
        var ids = new long[seqs.Count * t];
        var last = new long[seqs.Count];
        for (int i = 0; i < seqs.Count; i++)
        {
            for (int j = 0; j < t; j++) ids[i * t + j] = j < seqs[i].Length ? seqs[i][j] : padId;
            last[i] = seqs[i].Length - 1;
        }
        return (tensor(ids, new long[] { seqs.Count, t }, device: device), tensor(last, device: device));
    }

    /// <summary>(x, y) = tokens[o : o+T], tokens[o+1 : o+T+1] for each offset: the shift happens here.</summary>
    public static (Tensor X, Tensor Y) Windows(TokenStream s, IReadOnlyList<long> offsets, int t, Device device)
    {
        var buf = new long[offsets.Count * (t + 1)];
        for (int r = 0; r < offsets.Count; r++)
            for (int i = 0; i <= t; i++) buf[r * (t + 1) + i] = s.Tokens[offsets[r] + i];
        return Shift(tensor(buf, new long[] { offsets.Count, t + 1 }, device: device));
    }

    /// <summary>Rows of T+1 consecutive tokens (B, T+1) → inputs (B, T) and targets (B, T), every token after the first a target.</summary>
    public static (Tensor X, Tensor Y) Shift(Tensor rows)
    {
        long t = rows.shape[1] - 1;
        return (rows.narrow(1, 0, t), rows.narrow(1, 1, t));
    }
}
