using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ChatForge.Native;

/// <summary>
/// Device choice, threads and determinism for libtorch. Loading libtorch itself needs nothing here:
/// the build patches libLibTorchSharp.so for older libstdc++ (see build/LibStdCxxCompat.cs).
/// </summary>
public static class TorchRuntime
{
    /// <summary>"auto" (CUDA when this libtorch has it, else CPU), "cpu", "cuda" or "cuda:N".</summary>
    public static Device ResolveDevice(string spec)
    {
        switch (spec)
        {
            case "auto": return cuda.is_available() ? CUDA : CPU;
            case "cpu": return CPU;
            case var s when s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal):
                if (!cuda.is_available())
                    throw new ChatForgeException($"--device {spec}: this libtorch has no CUDA (ChatForge ships TorchSharp-cpu; reference a CUDA libtorch package to train on a GPU)");
                return new Device(s);
            default: throw new ChatForgeException($"--device must be auto, cpu, cuda or cuda:N, got '{spec}'");
        }
    }

    /// <summary>
    /// Intra-op threads. Under <paramref name="deterministic"/> libtorch runs on one thread: on this
    /// project's 2-core CPU, 2-thread runs drift apart after a few hundred steps (reduction order
    /// inside multi-threaded kernels), while 1-thread runs are bit-identical (see README, Determinism).
    /// </summary>
    public static void ConfigureThreads(bool deterministic, int? threads = null)
    {
        if (deterministic) set_num_threads(1);
        else if (threads is > 0) set_num_threads(threads.Value);
        else set_num_threads(Math.Max(1, Environment.ProcessorCount));
    }

    public static void Seed(long seed) => manual_seed(seed);

    /// <summary>
    /// Returns freed native heap pages to the OS (glibc malloc_trim). libtorch frees each step's
    /// activations, but glibc's growing mmap threshold keeps them in a fragmenting heap: measured on
    /// the demo model, resident memory grew by ~17 MB per step (6.3 GB after 1,300 steps) with a flat
    /// live-tensor count. The training loop trims every few steps. No-op where malloc_trim is absent.
    /// </summary>
    public static void TrimNativeHeap()
    {
        if (!OperatingSystem.IsLinux() || _noTrim) return;
        try { malloc_trim(0); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException) { _noTrim = true; }
    }

    static bool _noTrim;

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int malloc_trim(nuint pad);
}
