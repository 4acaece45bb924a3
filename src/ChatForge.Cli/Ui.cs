using ChatForge.Training;
using Spectre.Console;

namespace ChatForge.Cli;

/// <summary>Console rendering: log lines and progress bars on stderr, results on stdout.</summary>
public sealed class Ui
{
    public IAnsiConsole Err { get; }
    public TextWriter Out { get; }

    public Ui(TextWriter stdout, TextWriter stderr)
    {
        Out = stdout;
        Err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stderr) });
        // Not a terminal (a pipe, CI, a log file): no wrapping at 80 columns.
        if (!Err.Profile.Capabilities.Interactive) Err.Profile.Width = 4096;
    }

    public void Log(string message) => Err.MarkupLine($"[grey]{Markup.Escape(message)}[/]");

    /// <summary>Runs a training job under a progress bar showing loss, tokens/s and ETA.</summary>
    public T Train<T>(string title, long maxSteps, Func<Action<TrainingProgress>, T> job)
    {
        if (!Err.Profile.Capabilities.Interactive)
        {
            // Not a terminal (CI, a pipe): a plain line every 10% instead of an animated bar.
            long every = Math.Max(1, maxSteps / 10);
            return job(p =>
            {
                if (p.Step % every == 0 || p.Step == p.MaxSteps || p.Eval is not null)
                    Log($"{title} step {p.Step}/{p.MaxSteps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s ETA {p.Eta:hh\\:mm\\:ss}" +
                        (p.Eval is { } e ? " | " + string.Join(" ", e.Select(kv => $"{kv.Key} {kv.Value:F4}")) : ""));
            });
        }
        T result = default!;
        Err.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(title, maxValue: maxSteps);
                result = job(p =>
                {
                    task.Value = p.Step;
                    task.Description = $"{Markup.Escape(title)} loss [yellow]{p.Loss:F3}[/] {p.TokensPerSecond:F0} tok/s ETA {p.Eta:hh\\:mm\\:ss}";
                    if (p.Eval is { } e)
                        ctx.Refresh();
                });
            });
        return result;
    }

    /// <summary>A summary dictionary as a table (numbers and strings only).</summary>
    /// <summary>A training verb's run: progress while <paramref name="job"/> trains into <paramref name="dir"/>, then its summary and where its model is.</summary>
    public Dictionary<string, object?> TrainAndReport(string stage, long maxSteps, string title, string dir, string modelLabel,
        Func<Action<TrainingProgress>, Dictionary<string, object?>> job)
    {
        var summary = Train(stage, maxSteps, job);
        Summary(title, summary);
        Log($"{modelLabel}: {Path.Combine(Path.GetFullPath(dir), "model")}");
        return summary;
    }

    public void Summary(string title, IReadOnlyDictionary<string, object?> summary) =>
        Table(title, summary.Where(kv => kv.Value is double or long or int or string or bool)
            .Select(kv => (kv.Key, kv.Value is double d ? d.ToString("G6", System.Globalization.CultureInfo.InvariantCulture) : Convert.ToString(kv.Value, System.Globalization.CultureInfo.InvariantCulture)!)));

    public void Table(string title, IEnumerable<(string Key, string Value)> rows)
    {
        var t = new Table().Title(title).AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        foreach (var (k, v) in rows) t.AddRow(Markup.Escape(k), Markup.Escape(v));
        Err.Write(t);
    }
}
