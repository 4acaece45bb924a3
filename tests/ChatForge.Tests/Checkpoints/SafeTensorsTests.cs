using System.Buffers.Binary;
using System.Text;
using ChatForge.Checkpoints;
using ChatForge.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace ChatForge.Tests.Checkpoints;

public class SafeTensorsTests
{
    /// <summary>Builds a safetensors file by hand: header JSON + raw bytes.</summary>
    static string Make(TempDir d, string header, byte[] data, ulong? headerLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        var path = d[$"{Guid.NewGuid():N}.safetensors"];
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Floats(params float[] f) => f.SelectMany(BitConverter.GetBytes).ToArray();

    [Fact]
    public void Reads_a_hand_made_file()
    {
        using var d = new TempDir();
        var path = Make(d, """{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},"__metadata__":{"format":"pt"}}""",
            Floats(1, 2, 3, 4).Concat(BitConverter.GetBytes(42L)).ToArray());
        var t = SafeTensors.Load(path, out var meta);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, t["a"].data<float>().ToArray());
        Assert.Equal(new long[] { 2, 2 }, t["a"].shape);
        Assert.Equal(42L, t["b"].item<long>());
        Assert.Equal("pt", meta["format"]);
    }

    [Fact]
    public void Writes_what_it_reads_byte_for_byte()
    {
        using var d = new TempDir();
        var tensors = new Dictionary<string, Tensor> { ["w"] = randn(3, 5), ["b"] = arange(7, dtype: ScalarType.Int64), ["e"] = zeros(0) };
        SafeTensors.Save(d["x.safetensors"], tensors);
        var back = SafeTensors.Load(d["x.safetensors"]);
        Assert.True(back["w"].equal(tensors["w"]).all().item<bool>());
        Assert.True(back["b"].equal(tensors["b"]).all().item<bool>());
        Assert.Equal(new long[] { 0 }, back["e"].shape);
        var len = BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(d["x.safetensors"]));
        Assert.Equal(0UL, len % 8); // header padded to 8 bytes, as the reference writer does
        SafeTensors.Save(d["y.safetensors"], back);
        Assert.Equal(File.ReadAllBytes(d["x.safetensors"]), File.ReadAllBytes(d["y.safetensors"]));
    }

    [Theory]
    [InlineData("header length", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, 100000UL, "runs past the end of the file")]
    [InlineData("offsets out of range", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, null, "run past the end of the data")]
    [InlineData("overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, null, "overlap")]
    [InlineData("unknown dtype", """{"a":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}}""", 1, null, "unknown dtype 'F8_E9'")]
    [InlineData("shape/size", """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, null, "shape [3] × F32 is 12 bytes but data_offsets span 8")]
    [InlineData("not json", """{"a": nope""", 0, null, "not valid JSON")]
    [InlineData("negative dim", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, null, "invalid dimension")]
    [InlineData("reversed offsets", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", 4, null, "are invalid")]
    [InlineData("duplicate", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4, null, "appears twice")]
    public void Malformed_files_are_clear_errors(string what, string header, int dataBytes, ulong? headerLength, string expected)
    {
        using var d = new TempDir();
        var path = Make(d, header, new byte[dataBytes], headerLength);
        var e = Assert.Throws<ChatForgeException>(() => SafeTensors.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
        Assert.NotNull(what);
    }

    [Fact]
    public void A_file_shorter_than_eight_bytes_is_an_error()
    {
        using var d = new TempDir();
        var path = d["short.safetensors"];
        File.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        Assert.Contains("not a safetensors file", Assert.Throws<ChatForgeException>(() => SafeTensors.Load(path)).Message);
    }
}
