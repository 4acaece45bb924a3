using ChatForge.Tokenization;

namespace ChatForge.Data;

/// <summary>
/// A corpus as one long run of token ids (documents joined by &lt;|endoftext|&gt;), and the windows that
/// language-model batches are cut from. Batches come from a counter-based generator: the rows of step
/// s depend only on (seed, s), so the data position of a resumed run is just its step.
/// </summary>
public sealed class TokenStream
{
    public int[] Tokens { get; }
    public long Bytes { get; }

    public TokenStream(int[] tokens, long bytes) { Tokens = tokens; Bytes = bytes; }

    public static TokenStream Encode(IEnumerable<Document> docs, ITokenizer tok)
    {
        var ids = new List<int>();
        long bytes = 0;
        int eos = tok.EosId();
        foreach (var d in docs)
        {
            ids.AddRange(tok.Encode(d.Text));
            ids.Add(eos);
            bytes += System.Text.Encoding.UTF8.GetByteCount(d.Text);
        }
        return new TokenStream(ids.ToArray(), bytes);
    }

    /// <summary>
    /// Start offsets of rows firstRow … firstRow+rows-1 of step <paramref name="step"/> (each row is T+1
    /// tokens: input and shifted target). Rows are numbered within the step, so splitting a step into
    /// micro-batches (gradient accumulation) does not change which windows it sees.
    /// </summary>
    public long[] RandomOffsets(long seed, long step, int firstRow, int rows, int blockSize)
    {
        long range = Tokens.Length - blockSize - 1;
        if (range <= 0) throw new ChatForgeException($"corpus has {Tokens.Length} tokens, fewer than block_size+1 = {blockSize + 1}");
        var o = new long[rows];
        for (int r = 0; r < rows; r++)
            o[r] = (long)(Mix((ulong)seed, (ulong)step, (ulong)(firstRow + r)) % (ulong)(range + 1));
        return o;
    }

    /// <summary>Evenly spaced, non-overlapping windows for a fixed validation set (at most <paramref name="max"/>).</summary>
    public long[] EvalOffsets(int blockSize, int max)
    {
        long n = (Tokens.Length - 1) / blockSize;
        if (n <= 0) throw new ChatForgeException($"validation text has {Tokens.Length} tokens, fewer than block_size+1 = {blockSize + 1}");
        long count = Math.Min(n, max);
        var o = new long[count];
        for (long i = 0; i < count; i++) o[i] = i * n / count * blockSize;
        return o;
    }

    /// <summary>SplitMix64 over the words, a stateless hash used as the batch generator.</summary>
    public static ulong Mix(params ulong[] words)
    {
        ulong h = 0x9E3779B97F4A7C15UL;
        foreach (var w in words)
        {
            h ^= w + 0x9E3779B97F4A7C15UL + (h << 6) + (h >> 2);
            ulong z = h += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            h = z ^ (z >> 31);
        }
        return h;
    }
}
