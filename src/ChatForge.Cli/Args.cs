using System.Globalization;

namespace ChatForge.Cli;

/// <summary>
/// `--name value`, `--name v1 v2 …` (for options declared multi-valued) and `--flag`. Unknown
/// options, missing values and malformed numbers are errors that name the option.
/// </summary>
public sealed class Args
{
    readonly Dictionary<string, List<string>> _values = new();
    readonly HashSet<string> _flags = new();

    public Args(IEnumerable<string> argv, IEnumerable<string> options, IEnumerable<string>? flags = null, IEnumerable<string>? multi = null)
    {
        var opts = options.ToHashSet();
        var fl = (flags ?? Array.Empty<string>()).Append("verbose").ToHashSet();
        var mul = (multi ?? Array.Empty<string>()).ToHashSet();
        var list = argv.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) throw new ChatForgeException($"unexpected argument '{a}'");
            var name = a[2..];
            string? inline = null;
            if (name.Contains('=', StringComparison.Ordinal)) { inline = name[(name.IndexOf('=', StringComparison.Ordinal) + 1)..]; name = name[..name.IndexOf('=', StringComparison.Ordinal)]; }
            if (fl.Contains(name)) { _flags.Add(name); continue; }
            if (!opts.Contains(name) && !mul.Contains(name))
                throw new ChatForgeException($"unknown option --{name} (known: {string.Join(", ", opts.Concat(mul).Concat(fl).OrderBy(x => x).Select(x => "--" + x))})");
            var values = _values.TryGetValue(name, out var v) ? v : _values[name] = new List<string>();
            if (inline is not null) { values.Add(inline); continue; }
            if (i + 1 >= list.Count || (list[i + 1].StartsWith("--", StringComparison.Ordinal) && list[i + 1].Length > 2))
                throw new ChatForgeException($"--{name} needs a value");
            values.Add(list[++i]);
            if (mul.Contains(name))
                while (i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal)) values.Add(list[++i]);
        }
    }

    public bool Flag(string name) => _flags.Contains(name);
    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v[^1] : null;
    public List<string> All(string name) => _values.TryGetValue(name, out var v) ? v : new List<string>();
    public string Require(string name) => Get(name) ?? throw new ChatForgeException($"--{name} is required");

    public int? Int(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new ChatForgeException($"--{name} must be an integer, got '{s}'");
    }

    public long? Long(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new ChatForgeException($"--{name} must be an integer, got '{s}'");
    }

    public double? Double(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw new ChatForgeException($"--{name} must be a number, got '{s}'");
    }
}
