using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Xunit;

namespace ChatForge.Tests.Support;

/// <summary>Runs one of tests/hf_reference's stdlib-Python readers on a model directory and token ids: the last position's logits.</summary>
public static class PythonReference
{
    public static double[] LastLogits(string script, string modelDir, IEnumerable<int> ids)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "hf_reference", script);
        var psi = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.GetFullPath(path));
        psi.ArgumentList.Add(modelDir);
        foreach (var i in ids) psi.ArgumentList.Add(i.ToString(CultureInfo.InvariantCulture));
        using var proc = Process.Start(psi)!;
        var stderr = proc.StandardError.ReadToEndAsync();
        var stdout = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        Assert.True(proc.ExitCode == 0, stderr.Result);
        return JsonSerializer.Deserialize<double[]>(stdout)!;
    }
}
