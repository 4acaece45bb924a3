using System.Security.Cryptography;
using System.Text;

namespace ChatForge.Util;

/// <summary>
/// Stable pseudo-random numbers from (seed, key) and the held-out splits built on them: an item is held
/// out when the number of its key is below the fraction, so the split depends only on the item and the
/// seed (not on the order or the other items), and every run with the same seed makes the same split.
/// </summary>
public static class HashSplit
{
    /// <summary>A stable pseudo-random number in [0, 1): the first 8 bytes of SHA-256("{seed}\0{key}").</summary>
    public static double Unit(long seed, string key)
    {
        Span<byte> h = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}\u0000{key}"), h);
        return BitConverter.ToUInt64(h) / (double)ulong.MaxValue;
    }

    /// <summary>
    /// Items whose key hashes below <paramref name="fraction"/> are held out. With two or more items neither
    /// side is left empty: the item with the extreme number moves across.
    /// </summary>
    public static (List<T> Train, List<T> HeldOut) Split<T>(IReadOnlyList<T> items, Func<T, string> key, double fraction, long seed)
    {
        var scored = items.Select(x => (Item: x, U: Unit(seed, key(x)))).ToList();
        var held = scored.Where(s => s.U < fraction).Select(s => s.Item).ToList();
        var train = scored.Where(s => s.U >= fraction).Select(s => s.Item).ToList();
        if (items.Count >= 2 && held.Count == 0) { var m = scored.MinBy(s => s.U).Item; held.Add(m); train.Remove(m); }
        if (items.Count >= 2 && train.Count == 0) { var m = scored.MaxBy(s => s.U).Item; train.Add(m); held.Remove(m); }
        return (train, held);
    }
}
