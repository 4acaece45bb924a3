using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Xunit;

namespace ChatForge.Tests.Support;

/// <summary>Runs one of tests/hf_reference's stdlib-Python readers.</summary>
public static class PythonReference
{
    /// <summary>A model reader on a model directory and token ids: the last position's logits.</summary>
    public static double[] LastLogits(string script, string modelDir, IEnumerable<int> ids) =>
        JsonSerializer.Deserialize<double[]>(Run(script, new[] { modelDir }.Concat(ids.Select(i => i.ToString(CultureInfo.InvariantCulture))), null))!;

    /// <summary>A reader that takes JSON on stdin and prints JSON: <paramref name="input"/> serialized in, the output deserialized.</summary>
    public static T Json<T>(string script, IEnumerable<string> args, object input) =>
        JsonSerializer.Deserialize<T>(Run(script, args, JsonSerializer.Serialize(input)))!;

    static string Run(string script, IEnumerable<string> args, string? stdin)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "hf_reference", script);
        var psi = new ProcessStartInfo("python3")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null, UseShellExecute = false,
            StandardInputEncoding = stdin is null ? null : new System.Text.UTF8Encoding(false),
            StandardOutputEncoding = System.Text.Encoding.UTF8,
        };
        psi.Environment["PYTHONIOENCODING"] = "utf-8";
        psi.ArgumentList.Add(Path.GetFullPath(path));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi)!;
        var stderr = proc.StandardError.ReadToEndAsync();
        var stdout = proc.StandardOutput.ReadToEndAsync();
        if (stdin is not null) { proc.StandardInput.Write(stdin); proc.StandardInput.Close(); }
        proc.WaitForExit();
        Assert.True(proc.ExitCode == 0, stderr.Result);
        return stdout.Result;
    }
}
