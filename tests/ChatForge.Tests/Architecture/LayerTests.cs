using System.Reflection;
using System.Text.RegularExpressions;
using NetArchTest.Rules;
using Xunit;

namespace ChatForge.Tests.Architecture;

/// <summary>
/// The library's folders form one order, bottom first; a folder may use the ones below it and never one
/// above it. README's "Layout" section shows the same order.
/// </summary>
public class LayerTests
{
    public static readonly string[] Order =
    {
        "Util", "Native", "Tokenization", "Data", "Modeling", "Checkpoints", "Generation", "Labeling", "Evaluation", "Training", "Pipeline", "Serving",
    };

    /// <summary>"Layer uses upper layer: Type → Dependency" for every upward reference among <paramref name="root"/>'s layers.</summary>
    public static List<string> UpwardReferences(Assembly assembly, string root, IReadOnlyList<string> order)
    {
        var violations = new List<string>();
        for (int i = 0; i < order.Count; i++)
        {
            var above = order.Skip(i + 1).Select(l => $"{root}.{l}").ToArray();
            if (above.Length == 0) continue;
            // The bottom layer also holds the root namespace itself (ChatForgeException).
            var pattern = i == 0 ? $"^{Regex.Escape(root)}(\\.{order[0]})?$" : $"^{Regex.Escape(root)}\\.{order[i]}$";
            var result = Types.InAssembly(assembly).That().ResideInNamespaceMatching(pattern)
                .ShouldNot().HaveDependencyOnAny(above).GetResult();
            if (!result.IsSuccessful)
                foreach (var t in result.FailingTypeNames ?? Array.Empty<string>())
                    violations.Add($"{order[i]} uses a layer above it: {t}");
        }
        return violations;
    }

    [Fact]
    public void No_library_folder_uses_a_folder_above_it()
    {
        var violations = UpwardReferences(typeof(ChatForgeException).Assembly, "ChatForge", Order);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    [Fact]
    public void Every_library_namespace_is_a_layer()
    {
        var namespaces = typeof(ChatForgeException).Assembly.GetTypes().Select(t => t.Namespace).OfType<string>()
            .Where(n => n.StartsWith("ChatForge", StringComparison.Ordinal)).Distinct().ToList();
        var unknown = namespaces.Where(n => n != "ChatForge" && !Order.Any(l => n == "ChatForge." + l)).ToList();
        Assert.True(unknown.Count == 0, "namespaces outside the layer order: " + string.Join(", ", unknown));
    }

    [Fact]
    public void A_planted_upward_reference_is_caught()
    {
        var violations = UpwardReferences(typeof(LayerTests).Assembly, "ChatForge.Tests.LayerFixture", Order);
        var v = Assert.Single(violations);
        Assert.Contains("Modeling", v, StringComparison.Ordinal);
        Assert.Contains("PlantedUpwardReference", v, StringComparison.Ordinal);
    }

    [Fact]
    public void Modeling_does_no_file_io()
    {
        var result = Types.InAssembly(typeof(ChatForgeException).Assembly).That().ResideInNamespace("ChatForge.Modeling")
            .ShouldNot().HaveDependencyOnAny("System.IO.File", "System.IO.Directory", "System.IO.FileStream", "System.IO.StreamReader", "System.IO.StreamWriter")
            .GetResult();
        Assert.True(result.IsSuccessful, string.Join(", ", result.FailingTypeNames ?? Array.Empty<string>()));
    }
}
