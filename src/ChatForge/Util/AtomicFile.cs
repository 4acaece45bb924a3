using System.Text;

namespace ChatForge.Util;

/// <summary>
/// Writes that never leave a half-written file: write to a temp file beside the target, flush to
/// disk, then rename over the target (rename is atomic on POSIX file systems).
/// </summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, s =>
    {
        var bytes = new UTF8Encoding(false).GetBytes(text);
        s.Write(bytes, 0, bytes.Length);
    });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy, 0, copy.Length));
    }

    public static void Write(string path, Action<Stream> writer)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                writer(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>
    /// Replaces directory <paramref name="target"/> with a directory filled by <paramref name="fill"/>:
    /// the new content is built in a sibling temp directory, then swapped in by renames, so a reader
    /// (or a crash) sees either the old directory or the new one, never a mixture.
    /// </summary>
    public static void ReplaceDirectory(string target, Action<string> fill)
    {
        target = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var name = Path.GetFileName(target);
        var tmp = Path.Combine(parent, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.new");
        var old = Path.Combine(parent, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.old");
        Directory.CreateDirectory(tmp);
        try { fill(tmp); }
        catch { TryDelete(tmp); throw; }
        if (Directory.Exists(target)) Directory.Move(target, old);
        Directory.Move(tmp, target);
        TryDelete(old);
    }

    /// <summary>Finishes or rolls back a <see cref="ReplaceDirectory"/> that a crash interrupted.</summary>
    public static void Recover(string target)
    {
        target = Path.GetFullPath(target).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(target)!;
        if (!Directory.Exists(parent)) return;
        var name = Path.GetFileName(target);
        foreach (var d in Directory.GetDirectories(parent, $".{name}.*.old"))
        {
            if (!Directory.Exists(target)) Directory.Move(d, target); // crashed between the two renames
            else TryDelete(d);
        }
        foreach (var d in Directory.GetDirectories(parent, $".{name}.*.new")) TryDelete(d);
    }

    static void TryDelete(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }
}
