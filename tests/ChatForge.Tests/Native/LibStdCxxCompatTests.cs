using System.Text;
using ChatForge.Build;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Native;

public class LibStdCxxCompatTests
{
    static string PristineLibrary()
    {
        var nuget = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                    ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(nuget, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    static bool Contains(byte[] hay, string s) => IndexOf(hay, Encoding.ASCII.GetBytes(s)) >= 0;
    static int IndexOf(byte[] hay, byte[] needle) => hay.AsSpan().IndexOf(needle);
    static int Count(byte[] hay, string s)
    {
        var needle = Encoding.ASCII.GetBytes(s);
        int n = 0;
        for (int i = hay.AsSpan().IndexOf(needle); i >= 0; )
        {
            n++;
            int next = hay.AsSpan(i + 1).IndexOf(needle);
            i = next < 0 ? -1 : i + 1 + next;
        }
        return n;
    }

    [Fact]
    public void Patching_renames_the_symbol_and_repoints_the_version_requirement()
    {
        var original = File.ReadAllBytes(PristineLibrary());
        Assert.True(Contains(original, LibStdCxxCompat.OldSymbol + "\0"));
        Assert.True(Contains(original, LibStdCxxCompat.NewVersion + "\0"));

        var patched = (byte[])original.Clone();
        Assert.Equal(PatchOutcome.Patched, LibStdCxxCompat.Patch(patched));

        Assert.Equal(Count(original, LibStdCxxCompat.OldSymbol + "\0") - 1, Count(patched, LibStdCxxCompat.OldSymbol + "\0"));
        Assert.Equal(Count(original, LibStdCxxCompat.NewVersion + "\0"), Count(patched, LibStdCxxCompat.NewVersion + "\0")); // the string stays, unused
        Assert.Equal(original.Length, patched.Length);
        // Only a handful of bytes differ: the name in .dynstr and one vernaux entry (hash + name offset).
        int diff = original.Zip(patched).Count(p => p.First != p.Second);
        Assert.InRange(diff, 3, 40);
        // Patching again changes nothing.
        var again = (byte[])patched.Clone();
        Assert.Equal(PatchOutcome.AlreadyPatched, LibStdCxxCompat.Patch(again));
        Assert.Equal(patched, again);
    }

    [Fact]
    public void Elf_hash_matches_the_published_value_of_GLIBCXX_3_4()
    {
        // The vna_hash values the linker stored in libLibTorchSharp.so for these two version names.
        Assert.Equal(0x08922974u, LibStdCxxCompat.ElfHash("GLIBCXX_3.4"));
        Assert.Equal(0x0297f842u, LibStdCxxCompat.ElfHash("GLIBCXX_3.4.32"));
    }

    [Fact]
    public void Build_output_copy_is_patched_exactly_when_the_system_libstdcxx_lacks_GLIBCXX_3_4_32()
    {
        var output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(output), output);
        bool systemHasIt = LibStdCxxCompat.SystemHasGlibcxx3432(out _);
        var outcome = LibStdCxxCompat.Patch(File.ReadAllBytes(output)); // in memory: what would patching it now do?
        Assert.Equal(systemHasIt ? PatchOutcome.Patched : PatchOutcome.AlreadyPatched, outcome);
        // The NuGet cache copy is never touched.
        Assert.Equal(PatchOutcome.Patched, LibStdCxxCompat.Patch(File.ReadAllBytes(PristineLibrary())));
    }

    [Fact]
    public void TorchSharp_loads_and_computes()
    {
        var a = tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        var b = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, b.data<float>().ToArray());
    }

    [Fact]
    public void Patching_rejects_files_that_are_not_elf()
    {
        Assert.Throws<InvalidDataException>(() => LibStdCxxCompat.Patch(new byte[100]));
    }
}
