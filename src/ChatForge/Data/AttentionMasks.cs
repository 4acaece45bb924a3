using static TorchSharp.torch;

namespace ChatForge.Data;

/// <summary>
/// Every attention mask the models use, in one place. Boolean, true = the query may attend to the key,
/// shaped to broadcast over heads: (B or 1, 1, queries, keys).
/// </summary>
public static class AttentionMasks
{
    /// <summary>(T, T) lower-triangular: query i sees keys 0 … i.</summary>
    public static Tensor Causal(long t, Device device) => ones(t, t, dtype: ScalarType.Bool, device: device).tril();

    /// <summary>
    /// (B, 1, T, T) for packed rows: causal and only within the same segment. <paramref name="segments"/>
    /// (B, T) holds each position's segment id (padding as a segment of its own).
    /// </summary>
    public static Tensor BlockDiagonalCausal(Tensor segments)
    {
        var same = segments.unsqueeze(2).eq(segments.unsqueeze(1));                       // (B, T, T)
        return (same & Causal(segments.shape[1], segments.device).unsqueeze(0)).unsqueeze(1);
    }

    /// <summary>
    /// (B, 1, L, L) for left-padded rows: causal and not padding, where <paramref name="keyMask"/> (B, L) is
    /// true at real tokens. Each position may always see itself, so no row of the softmax is empty.
    /// </summary>
    public static Tensor PaddedCausal(Tensor keyMask)
    {
        long l = keyMask.shape[1];
        var self = eye(l, dtype: ScalarType.Bool, device: keyMask.device);
        return (Causal(l, keyMask.device).unsqueeze(0) & keyMask.unsqueeze(1)).logical_or(self.unsqueeze(0)).unsqueeze(1);
    }

    /// <summary>(1, 1, T, past + T): <paramref name="t"/> new queries after <paramref name="past"/> cached keys; query i sees keys 0 … past + i.</summary>
    public static Tensor AfterCache(int past, long t, Device device)
    {
        var q = arange(past, past + t, device: device).unsqueeze(1);
        var k = arange(0, past + t, device: device).unsqueeze(0);
        return k.le(q).unsqueeze(0).unsqueeze(0);
    }
}
