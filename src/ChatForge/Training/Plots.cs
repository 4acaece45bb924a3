namespace ChatForge.Training;

/// <summary>PNG plots of run metrics (ScottPlot).</summary>
public static class Plots
{
    /// <summary>Train loss (and val_loss where logged) against step, from metrics.jsonl.</summary>
    public static void LossCurve(string metricsPath, string pngPath, string title,
                                 string trainKey = "loss", string valKey = "val_loss")
    {
        var rows = Training.MetricsLog.Read(metricsPath);
        Lines(pngPath, title, "step", "loss (nats/token)", new[]
        {
            (trainKey, rows.Where(r => r.ContainsKey(trainKey)).Select(r => (r["step"], r[trainKey])).ToList()),
            (valKey, rows.Where(r => r.ContainsKey(valKey)).Select(r => (r["step"], r[valKey])).ToList()),
        });
    }

    /// <summary>A line plot of named series; empty series are skipped.</summary>
    public static void Lines(string pngPath, string title, string xLabel, string yLabel,
                             IEnumerable<(string Name, List<(double X, double Y)> Points)> series, int width = 800, int height = 500)
    {
        var plot = new ScottPlot.Plot();
        bool any = false;
        foreach (var (name, points) in series)
        {
            var pts = points.Where(p => double.IsFinite(p.Y)).ToList();
            if (pts.Count == 0) continue;
            var sc = plot.Add.Scatter(pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray());
            sc.LegendText = name;
            sc.MarkerSize = pts.Count > 50 ? 0 : 5;
            any = true;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        if (any) plot.ShowLegend();
        var tmp = pngPath + ".tmp.png";
        plot.SavePng(tmp, width, height);
        File.Move(tmp, pngPath, overwrite: true);
    }
}
