using System.Text.Json;
using ChatForge.Tests.Support;
using ChatForge.Training;
using Xunit;

namespace ChatForge.Tests.Training;

public class RunDirectoryTests
{
    [Fact]
    public void A_summary_writes_numbers_that_are_not_finite_as_null_at_any_depth()
    {
        using var d = new TempDir();
        var run = new RunDirectory(d["run"]);
        run.WriteSummary(new Dictionary<string, object?>
        {
            ["top"] = double.NaN,
            ["list"] = new List<double> { 1.5, double.PositiveInfinity },
            ["nested"] = new Dictionary<string, object?> { ["a"] = double.NaN, ["b"] = 2.0, ["kinds"] = new Dictionary<string, double?> { ["x"] = null, ["y"] = 0.25 } },
            ["rows"] = new List<Dictionary<string, object?>> { new() { ["round"] = 1, ["score"] = double.NaN } },
            ["text"] = "ok",
        });
        var s = JsonDocument.Parse(File.ReadAllText(run.SummaryPath)).RootElement;
        Assert.Equal(JsonValueKind.Null, s.GetProperty("top").ValueKind);
        Assert.Equal(1.5, s.GetProperty("list")[0].GetDouble());
        Assert.Equal(JsonValueKind.Null, s.GetProperty("list")[1].ValueKind);
        Assert.Equal(JsonValueKind.Null, s.GetProperty("nested").GetProperty("a").ValueKind);
        Assert.Equal(2.0, s.GetProperty("nested").GetProperty("b").GetDouble());
        Assert.Equal(0.25, s.GetProperty("nested").GetProperty("kinds").GetProperty("y").GetDouble());
        Assert.Equal(JsonValueKind.Null, s.GetProperty("nested").GetProperty("kinds").GetProperty("x").ValueKind);
        Assert.Equal(1, s.GetProperty("rows")[0].GetProperty("round").GetInt32());
        Assert.Equal(JsonValueKind.Null, s.GetProperty("rows")[0].GetProperty("score").ValueKind);
        Assert.Equal("ok", s.GetProperty("text").GetString());
    }
}
