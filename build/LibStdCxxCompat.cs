// Makes TorchSharp 0.107.0's libLibTorchSharp.so load on systems whose libstdc++ predates GCC 13.
//
// The library needs GLIBCXX_3.4.32 for exactly one symbol, std::ios_base_library_init() (GCC 13's
// replacement for the static std::ios_base::Init object). On GCC 12's libstdc++ (Debian 12,
// Ubuntu 22.04) the loader refuses the whole library. We patch the *build-output copy*:
//   1. the undefined dynamic symbol _ZSt21ios_base_library_initv is renamed to
//      _ZNSt8ios_base4InitC1Ev (std::ios_base::Init::Init(), which does the same work and ignores `this`);
//   2. the GLIBCXX_3.4.32 entry of .gnu.version_r is pointed at the existing "GLIBCXX_3.4" string,
//      with that string's ELF hash, so the renamed symbol binds to GLIBCXX_3.4.
// This file is compiled twice: into an MSBuild inline task (build/LibStdCxxCompat.targets) and into
// the test project (which defines CHATFORGE_NO_MSBUILD_TASK and tests the patcher directly).
#nullable enable
using System;
using System.IO;
using System.Text;

namespace ChatForge.Build
{
    public enum PatchOutcome { Patched, AlreadyPatched, NotNeeded }

    public static class LibStdCxxCompat
    {
        public const string OldSymbol = "_ZSt21ios_base_library_initv";
        public const string NewSymbol = "_ZNSt8ios_base4InitC1Ev";
        public const string NewVersion = "GLIBCXX_3.4.32";
        public const string OldVersion = "GLIBCXX_3.4";

        const uint ShtDynsym = 11, ShtVerneed = 0x6ffffffe;

        /// <summary>True when some libstdc++.so.6 on the usual library paths exports GLIBCXX_3.4.32.</summary>
        public static bool SystemHasGlibcxx3432(out string? libraryPath)
        {
            string[] dirs = { "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
                              "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu" };
            libraryPath = null;
            foreach (var dir in dirs)
            {
                var path = Path.Combine(dir, "libstdc++.so.6");
                if (!File.Exists(path)) continue;
                libraryPath = path;
                var bytes = File.ReadAllBytes(path);
                if (IndexOf(bytes, Encoding.ASCII.GetBytes(NewVersion + "\0"), 0) >= 0) return true;
                return false;
            }
            return false;
        }

        /// <summary>Patches <paramref name="path"/> in place (atomically: temp file + rename).</summary>
        public static PatchOutcome Patch(string path)
        {
            var elf = File.ReadAllBytes(path);
            var outcome = Patch(elf);
            if (outcome != PatchOutcome.Patched) return outcome;
            var tmp = path + ".patching";
            File.WriteAllBytes(tmp, elf);
            File.Replace(tmp, path, null); // rename over the original: never half-written
            return outcome;
        }

        /// <summary>Patches an ELF64 little-endian image in memory.</summary>
        public static PatchOutcome Patch(byte[] elf)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file");
            if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");

            ulong shoff = U64(elf, 0x28);
            int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
            if (shoff == 0 || shentsize < 64 || (long)shoff + (long)shentsize * shnum > elf.Length)
                throw new InvalidDataException("ELF section headers missing or out of range");

            int dynsym = -1, verneed = -1;
            for (int i = 0; i < shnum; i++)
            {
                uint type = U32(elf, (int)shoff + i * shentsize + 4);
                if (type == ShtDynsym) dynsym = i;
                else if (type == ShtVerneed) verneed = i;
            }
            if (dynsym < 0) throw new InvalidDataException("no .dynsym section");
            var (symOff, symSize, symLink, symEnt) = Section(elf, shoff, shentsize, dynsym);
            var (strOff, strSize, _, _) = Section(elf, shoff, shentsize, (int)symLink);
            if (symEnt == 0) symEnt = 24;

            // 1. The undefined symbol.
            int renamed = 0, alreadyNew = 0;
            for (long s = symOff; s + 24 <= symOff + symSize; s += (long)symEnt)
            {
                uint name = U32(elf, (int)s);
                ushort shndx = U16(elf, (int)s + 6);
                string sym = CString(elf, strOff + name, strOff + strSize);
                if (shndx != 0) continue; // only undefined (imported) symbols
                if (sym == OldSymbol)
                {
                    CheckNothingPointsInside(elf, symOff, symSize, symEnt, strOff, strOff + name, OldSymbol.Length);
                    var bytes = Encoding.ASCII.GetBytes(NewSymbol);
                    long at = strOff + name;
                    Array.Clear(elf, (int)at, OldSymbol.Length);
                    Array.Copy(bytes, 0, elf, at, bytes.Length);
                    renamed++;
                }
                else if (sym == NewSymbol) alreadyNew++;
            }

            // 2. The version requirement.
            int repointed = 0;
            if (verneed >= 0)
            {
                var (vnOff, _, vnLink, _) = Section(elf, shoff, shentsize, verneed);
                var (vsOff, vsSize, _, _) = Section(elf, shoff, shentsize, (int)vnLink);
                long vn = vnOff;
                while (true)
                {
                    ushort cnt = U16(elf, (int)vn + 2);
                    uint aux = U32(elf, (int)vn + 8), next = U32(elf, (int)vn + 12);
                    long[] auxes = new long[cnt];
                    long a = vn + aux;
                    uint oldVersionName = uint.MaxValue;
                    for (int j = 0; j < cnt; j++)
                    {
                        auxes[j] = a;
                        if (CString(elf, vsOff + U32(elf, (int)a + 8), vsOff + vsSize) == OldVersion) oldVersionName = U32(elf, (int)a + 8);
                        a += U32(elf, (int)a + 12);
                    }
                    foreach (var entry in auxes)
                    {
                        if (CString(elf, vsOff + U32(elf, (int)entry + 8), vsOff + vsSize) != NewVersion) continue;
                        if (oldVersionName == uint.MaxValue) throw new InvalidDataException("no GLIBCXX_3.4 requirement to point GLIBCXX_3.4.32 at");
                        WriteU32(elf, (int)entry, ElfHash(OldVersion));
                        WriteU32(elf, (int)entry + 8, oldVersionName);
                        repointed++;
                    }
                    if (next == 0) break;
                    vn += next;
                }
            }

            if (renamed == 0 && repointed == 0)
                return alreadyNew > 0 ? PatchOutcome.AlreadyPatched : PatchOutcome.NotNeeded;
            return PatchOutcome.Patched;
        }

        /// <summary>The classic System V ELF hash (used by vna_hash).</summary>
        public static uint ElfHash(string name)
        {
            uint h = 0;
            foreach (char c in name)
            {
                h = (h << 4) + (byte)c;
                uint g = h & 0xf0000000;
                if (g != 0) h ^= g >> 24;
                h &= ~g;
            }
            return h;
        }

        // Another symbol may share the string's tail (string-table suffix merging); renaming in
        // place would then corrupt that symbol, so refuse.
        static void CheckNothingPointsInside(byte[] elf, long symOff, long symSize, ulong symEnt, long strOff, long start, int length)
        {
            for (long s = symOff; s + 24 <= symOff + symSize; s += (long)symEnt)
            {
                long at = strOff + U32(elf, (int)s);
                if (at > start && at <= start + length)
                    throw new InvalidDataException("another dynamic symbol shares the name's bytes; refusing to patch in place");
            }
        }

        static (long off, long size, uint link, ulong entsize) Section(byte[] elf, ulong shoff, int shentsize, int index)
        {
            int h = (int)shoff + index * shentsize;
            long off = (long)U64(elf, h + 24), size = (long)U64(elf, h + 32);
            if (off < 0 || size < 0 || off + size > elf.Length) throw new InvalidDataException($"ELF section {index} out of range");
            return (off, size, U32(elf, h + 40), U64(elf, h + 56));
        }

        static string CString(byte[] b, long start, long limit)
        {
            if (start < 0 || start >= limit) throw new InvalidDataException("ELF string offset out of range");
            long end = start;
            while (end < limit && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)start, (int)(end - start));
        }

        static int IndexOf(byte[] hay, byte[] needle, int from)
        {
            for (int i = from; i <= hay.Length - needle.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && hay[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        static ushort U16(byte[] b, int o) => (ushort)(b[o] | b[o + 1] << 8);
        static uint U32(byte[] b, int o) => (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24);
        static ulong U64(byte[] b, int o) => U32(b, o) | (ulong)U32(b, o + 4) << 32;
        static void WriteU32(byte[] b, int o, uint v) { b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); b[o + 2] = (byte)(v >> 16); b[o + 3] = (byte)(v >> 24); }
    }
}

#if !CHATFORGE_NO_MSBUILD_TASK
namespace ChatForge.Build
{
    /// <summary>MSBuild task: patches each given libLibTorchSharp.so when the system libstdc++ lacks GLIBCXX_3.4.32.</summary>
    public sealed class PatchLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public string[] Files { get; set; } = Array.Empty<string>();

        public override bool Execute()
        {
            if (Environment.OSVersion.Platform != PlatformID.Unix) return true;
            if (LibStdCxxCompat.SystemHasGlibcxx3432(out var lib))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"{lib} has GLIBCXX_3.4.32: libLibTorchSharp.so needs no patch");
                return true;
            }
            foreach (var file in Files)
            {
                if (!File.Exists(file)) continue;
                var outcome = LibStdCxxCompat.Patch(file);
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"libstdc++ compatibility ({lib ?? "no libstdc++ found"} lacks GLIBCXX_3.4.32): {file}: {outcome}");
            }
            return true;
        }
    }
}
#endif
