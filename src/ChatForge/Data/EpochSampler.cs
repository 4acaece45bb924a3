namespace ChatForge.Data;

/// <summary>
/// Which items a step trains on: the items in a fresh seeded shuffle each epoch, consumed in order.
/// Position p of the stream is a pure function of (seed, p), so the data position of a resumed run
/// is its step, and splitting a step into micro-batches does not change which items it sees.
/// </summary>
public sealed class EpochSampler
{
    readonly int _count, _perStep;
    readonly long _seed;
    readonly Dictionary<long, int[]> _perms = new();

    public EpochSampler(int count, long seed, int perStep)
    {
        if (count <= 0) throw new ChatForgeException("no training items");
        _count = count; _seed = seed; _perStep = perStep;
    }

    /// <summary>Item indices at positions [first, first+n) of step <paramref name="step"/>.</summary>
    public int[] Indices(long step, int first, int n)
    {
        var r = new int[n];
        for (int i = 0; i < n; i++)
        {
            long pos = step * _perStep + first + i;
            r[i] = Permutation(pos / _count)[pos % _count];
        }
        return r;
    }

    int[] Permutation(long epoch)
    {
        if (_perms.TryGetValue(epoch, out var p)) return p;
        p = Enumerable.Range(0, _count).ToArray();
        new Random((int)(TokenStream.Mix((ulong)_seed, (ulong)epoch) & 0x7fffffff)).Shuffle(p);
        if (_perms.Count > 4) _perms.Clear();
        return _perms[epoch] = p;
    }
}
