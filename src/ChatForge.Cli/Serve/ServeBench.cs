using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using ChatForge.Checkpoints;
using ChatForge.Modeling;
using ChatForge.Tokenization;
using ChatForge.Training;

namespace ChatForge.Cli.Serve;

/// <summary>
/// `chatforge bench --serve`: a bounded load on a real `chatforge serve` over loopback. For each client count, that many
/// clients send non-streamed chat completions back to back for the duration: requests/s, completion tokens/s, p50 and p99
/// latency, errors, and the mean number of requests each decoding step served; resident memory after a warm-up and after the load.
/// </summary>
public static class ServeBench
{
    public sealed record Options
    {
        /// <summary>A chat model directory; null: random weights of the preset's shape with the byte-level tokenizer.</summary>
        public string? Model { get; init; }
        public ModelSpec Shape { get; init; } = new();
        public IReadOnlyList<int> Clients { get; init; } = new[] { 1, 8 };
        public double Seconds { get; init; } = 20;
        public int MaxTokens { get; init; } = 32;
    }

    public const double MaxSeconds = 60;

    public static Dictionary<string, double> Run(Options o, Action<string>? log = null)
    {
        if (o.Seconds is <= 0 or > MaxSeconds) throw new ChatForgeException($"--duration must be in (0, {MaxSeconds}] seconds, got {o.Seconds}");
        if (o.Clients.Count == 0 || o.Clients.Any(c => c is < 1 or > 64)) throw new ChatForgeException("--clients must be counts from 1 to 64");
        if (o.MaxTokens < 1) throw new ChatForgeException($"--max-tokens must be ≥ 1, got {o.MaxTokens}");
        string? temp = null;
        var dir = o.Model;
        if (dir is null)
        {
            temp = Path.Combine(Path.GetTempPath(), "chatforge-bench-" + Guid.NewGuid().ToString("N"));
            TorchSharp.torch.manual_seed(1);
            var tok = new ByteTokenizer();
            using var m = o.Shape.Build(tok.VocabSize, tok.EosId(), tok.EosId());
            HfCheckpoint.Write(temp, m, tok);
            dir = temp;
            log?.Invoke($"serve bench: random weights, {o.Shape.NLayer} layers × {o.Shape.NEmbd}, context {o.Shape.BlockSize}, byte-level vocabulary");
        }
        try
        {
            return RunOn(dir, o, log).GetAwaiter().GetResult();
        }
        finally
        {
            if (temp is not null) try { Directory.Delete(temp, true); } catch (IOException) { }
        }
    }

    static double RssMb() { using var p = Process.GetCurrentProcess(); p.Refresh(); return p.WorkingSet64 / (1024.0 * 1024.0); }

    static async Task<Dictionary<string, double>> RunOn(string dir, Options o, Action<string>? log)
    {
        var figures = new Dictionary<string, double>();
        await using var server = await ChatServer.StartAsync(new ServeOptions { Models = new() { ["bench"] = dir }, Port = 0, MaxBatch = 8, QueueCapacity = 128 });
        using var http = new HttpClient { BaseAddress = new Uri(server.BaseUrl), Timeout = TimeSpan.FromSeconds(120) };
        var queue = server.Models["bench"].Queue;
        int seed = 0;
        object Body() => new
        {
            model = "bench", max_tokens = o.MaxTokens, temperature = 1.0, seed = Interlocked.Increment(ref seed),
            messages = new[] { new { role = "user", content = "Tell me about the sea and the ships that sail on it." } },
        };
        // Warm-up at the largest client count: JIT, and the allocations of a full batch (so "before" is the steady state).
        for (int round = 0; round < 3; round++)
            await Task.WhenAll(Enumerable.Range(0, o.Clients.Max()).Select(async _ => (await http.PostAsJsonAsync("/v1/chat/completions", Body())).EnsureSuccessStatusCode()));
        GC.Collect();
        figures["serve_rss_before_mb"] = Math.Round(RssMb(), 1);
        foreach (var clients in o.Clients)
        {
            var latencies = new System.Collections.Concurrent.ConcurrentBag<double>();
            long tokens = 0, errors = 0, steps0 = queue.Steps, rows0 = queue.RowSteps;
            var clock = Stopwatch.StartNew();
            var until = TimeSpan.FromSeconds(o.Seconds);
            await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
            {
                while (clock.Elapsed < until)
                {
                    var t = Stopwatch.StartNew();
                    try
                    {
                        var r = await http.PostAsJsonAsync("/v1/chat/completions", Body());
                        if (!r.IsSuccessStatusCode) { Interlocked.Increment(ref errors); continue; }
                        var json = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
                        Interlocked.Add(ref tokens, json.GetProperty("usage").GetProperty("completion_tokens").GetInt64());
                        latencies.Add(t.Elapsed.TotalMilliseconds);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { Interlocked.Increment(ref errors); }
                }
            })));
            double seconds = clock.Elapsed.TotalSeconds;
            var sorted = latencies.Order().ToList();
            double Pct(double p) => sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
            string k = $"serve_c{clients}_";
            figures[k + "requests_per_s"] = Math.Round(sorted.Count / seconds, 2);
            figures[k + "tokens_per_s"] = Math.Round(tokens / seconds, 1);
            figures[k + "p50_ms"] = Math.Round(Pct(0.50), 1);
            figures[k + "p99_ms"] = Math.Round(Pct(0.99), 1);
            figures[k + "errors"] = errors;
            long steps = queue.Steps - steps0;
            figures[k + "mean_batch"] = steps == 0 ? double.NaN : Math.Round((double)(queue.RowSteps - rows0) / steps, 2);
            GC.Collect();
            figures[k + "rss_mb"] = Math.Round(RssMb(), 1);
            log?.Invoke($"{clients} client(s): {figures[k + "requests_per_s"].ToString(CultureInfo.InvariantCulture)} requests/s, " +
                        $"{figures[k + "tokens_per_s"].ToString(CultureInfo.InvariantCulture)} tokens/s, p50 {figures[k + "p50_ms"].ToString(CultureInfo.InvariantCulture)} ms, " +
                        $"p99 {figures[k + "p99_ms"].ToString(CultureInfo.InvariantCulture)} ms, {errors} errors, mean batch {figures[k + "mean_batch"].ToString(CultureInfo.InvariantCulture)}, " +
                        $"resident {figures[k + "rss_mb"].ToString(CultureInfo.InvariantCulture)} MB");
        }
        GC.Collect();
        figures["serve_rss_after_mb"] = Math.Round(RssMb(), 1);
        return figures;
    }
}
