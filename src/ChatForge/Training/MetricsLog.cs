using System.Globalization;
using System.Text;
using System.Text.Json;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ChatForge.Training;

/// <summary>metrics.jsonl (one JSON object per logged step) and TensorBoard event files, side by side.</summary>
public sealed class MetricsLog : IDisposable
{
    readonly string _path;
    readonly StreamWriter _writer;
    readonly SummaryWriter? _tb;

    public MetricsLog(RunDirectory run, long resumeStep = -1, bool tensorBoard = true)
    {
        _path = run.MetricsPath;
        if (resumeStep >= 0) TruncateAfter(_path, resumeStep);
        else if (File.Exists(_path)) File.Delete(_path);
        _writer = new StreamWriter(new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
        if (tensorBoard) _tb = utils.tensorboard.SummaryWriter(run.TensorBoardDir, createRunName: false);
    }

    public void Write(long step, IReadOnlyDictionary<string, double> metrics)
    {
        var sb = new StringBuilder("{\"step\":").Append(step.ToString(CultureInfo.InvariantCulture));
        foreach (var (k, v) in metrics)
        {
            sb.Append(",\"").Append(k).Append("\":");
            sb.Append(double.IsFinite(v) ? v.ToString("R", CultureInfo.InvariantCulture) : "null");
            if (double.IsFinite(v)) _tb?.add_scalar(k, (float)v, (int)step);
        }
        sb.Append('}');
        _writer.WriteLine(sb.ToString());
        _writer.Flush();
    }

    /// <summary>Drops lines logged after the checkpoint being resumed (and a torn last line).</summary>
    static void TruncateAfter(string path, long step)
    {
        if (!File.Exists(path)) return;
        var keep = new List<string>();
        foreach (var line in File.ReadAllLines(path))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.GetProperty("step").GetInt64() <= step) keep.Add(line);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { }
        }
        Util.AtomicFile.WriteAllText(path, keep.Count == 0 ? "" : string.Join('\n', keep) + "\n");
    }

    /// <summary>Reads metrics.jsonl back: one dictionary per line.</summary>
    public static List<Dictionary<string, double>> Read(string path)
    {
        var rows = new List<Dictionary<string, double>>();
        if (!File.Exists(path)) return rows;
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var d = new Dictionary<string, double>();
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.Number) d[p.Name] = p.Value.GetDouble();
            rows.Add(d);
        }
        return rows;
    }

    public void Dispose()
    {
        _writer.Dispose();
    }
}
