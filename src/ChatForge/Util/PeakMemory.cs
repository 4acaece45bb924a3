using System.Diagnostics;
using System.Globalization;

namespace ChatForge.Util;

/// <summary>
/// The process's peak resident set size (Linux VmHWM), and a reset of it so that one stage of a longer
/// process (an SFT run inside the pipeline) reports its own peak.
/// </summary>
public static class PeakMemory
{
    const string Status = "/proc/self/status", ClearRefs = "/proc/self/clear_refs";

    /// <summary>Peak resident set size in MiB since the process started or since the last successful <see cref="Reset"/>.</summary>
    public static double PeakRssMb()
    {
        if (File.Exists(Status))
            foreach (var line in File.ReadLines(Status))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
        return Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);
    }

    /// <summary>
    /// Resets the peak to the current resident set (Linux ≥ 4.0: "5" written to /proc/self/clear_refs).
    /// Returns false where that is not possible; the peak then stays the process's.
    /// </summary>
    public static bool Reset()
    {
        try
        {
            if (!File.Exists(ClearRefs)) return false;
            File.WriteAllText(ClearRefs, "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }
}
