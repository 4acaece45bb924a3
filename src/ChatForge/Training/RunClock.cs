using System.Diagnostics;

namespace ChatForge.Training;

/// <summary>
/// Wall time of a run across resumes (the seconds before the resumed checkpoint plus this session's), the
/// progress report with its ETA, and the periodic return of freed native memory: shared by every loop.
/// </summary>
public sealed class RunClock
{
    readonly Stopwatch _sw = Stopwatch.StartNew();

    /// <summary>Seconds the run had spent before this session (from the resumed checkpoint).</summary>
    public double ElapsedBefore { get; }
    /// <summary>The step this session started at.</summary>
    public long StartStep { get; }

    public RunClock(double elapsedBefore, long startStep) { ElapsedBefore = elapsedBefore; StartStep = startStep; }

    /// <summary>Seconds of this session.</summary>
    public double SessionSeconds => _sw.Elapsed.TotalSeconds;
    /// <summary>Seconds of the whole run, resumes included.</summary>
    public double TotalSeconds => ElapsedBefore + SessionSeconds;

    /// <summary>The progress report after <paramref name="done"/> of <paramref name="total"/> steps; ETA from this session's pace.</summary>
    public TrainingProgress Progress(long done, long total, double loss, double tokensPerSecond, IReadOnlyDictionary<string, double>? eval)
    {
        double el = SessionSeconds;
        double perStep = el / (done - StartStep);
        return new TrainingProgress(done, total, loss, tokensPerSecond, TimeSpan.FromSeconds(ElapsedBefore + el),
            TimeSpan.FromSeconds(perStep * (total - done)), eval);
    }

    /// <summary>Steps between returning freed native memory to the OS (see TorchRuntime.TrimNativeHeap).</summary>
    public const int TrimEvery = 20;

    /// <summary>Returns freed native memory to the OS every <see cref="TrimEvery"/> steps.</summary>
    public static void TrimAfter(long stepsDone)
    {
        if (stepsDone % TrimEvery == 0) Native.TorchRuntime.TrimNativeHeap();
    }
}
