using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ChatForge.Util;
using static TorchSharp.torch;

namespace ChatForge.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>
/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the raw
/// little-endian tensor bytes. Reading validates everything before trusting it: header length
/// within the file, JSON shape, known dtype, offsets inside the data and non-overlapping, and byte
/// size equal to shape × dtype size. A violation is a <see cref="ChatForgeException"/> naming the
/// file and tensor; nothing is loaded silently wrong.
/// </summary>
public static class SafeTensors
{
    static readonly Dictionary<string, (ScalarType Type, int Size)> Dtypes = new()
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1), ["BOOL"] = (ScalarType.Bool, 1),
    };

    const long MaxHeader = 100_000_000; // the reference implementation's limit

    public static string DtypeName(ScalarType t) =>
        Dtypes.FirstOrDefault(p => p.Value.Type == t).Key ?? throw new ArgumentException($"dtype {t} has no safetensors name");

    /// <summary>Writes the tensors (atomically). Names are sorted so files are byte-for-byte reproducible.</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var m = new JsonObject();
            foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal)) m[k] = v;
            header["__metadata__"] = m;
        }
        long offset = 0;
        var datas = new List<Tensor>();
        foreach (var (name, t) in list)
        {
            var cpu = t.detach().cpu().contiguous();
            long n = cpu.NumberOfElements * cpu.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = DtypeName(cpu.dtype),
                ["shape"] = new JsonArray(cpu.shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + n),
            };
            offset += n;
            datas.Add(cpu);
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(path, s =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            s.Write(len);
            s.Write(json);
            for (int i = json.Length; i < padded; i++) s.WriteByte((byte)' ');
            foreach (var d in datas)
            {
                if (d.NumberOfElements > 0) s.Write(d.bytes);
                d.Dispose();
            }
        });
    }

    /// <summary>Reads and validates the header.</summary>
    public static (List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata, long DataStart) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new ChatForgeException($"{path}: file not found");
        using var fs = File.OpenRead(path);
        long fileLength = fs.Length;
        if (fileLength < 8) throw new ChatForgeException($"{path}: not a safetensors file (shorter than its 8-byte header length)");
        Span<byte> len = stackalloc byte[8];
        fs.ReadExactly(len);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (n > (ulong)(fileLength - 8)) throw new ChatForgeException($"{path}: header length {n} runs past the end of the file ({fileLength} bytes)");
        if (n > MaxHeader) throw new ChatForgeException($"{path}: header length {n} is larger than the {MaxHeader}-byte limit");
        var headerBytes = new byte[n];
        fs.ReadExactly(headerBytes);
        long dataStart = 8 + (long)n, dataLength = fileLength - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(new UTF8Encoding(false, true).GetString(headerBytes)); }
        catch (Exception e) when (e is JsonException or DecoderFallbackException) { throw new ChatForgeException($"{path}: header is not valid JSON: {e.Message.Split(". ")[0]}"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ChatForgeException($"{path}: header is not a JSON object");

        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>();
        var seen = new HashSet<string>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw new ChatForgeException($"{path}: tensor '{p.Name}' appears twice in the header");
            if (p.Name == "__metadata__")
            {
                if (p.Value.ValueKind != JsonValueKind.Object) throw new ChatForgeException($"{path}: __metadata__ must be an object of strings");
                foreach (var m in p.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()!
                        : throw new ChatForgeException($"{path}: __metadata__ value '{m.Name}' is not a string");
                continue;
            }
            tensors.Add(ParseEntry(path, p.Name, p.Value, dataLength));
        }
        // No two tensors may share bytes.
        var ordered = tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < ordered.Count; i++)
            if (ordered[i].Begin < ordered[i - 1].End)
                throw new ChatForgeException($"{path}: tensors '{ordered[i - 1].Name}' and '{ordered[i].Name}' overlap (offsets {ordered[i - 1].Begin}-{ordered[i - 1].End} and {ordered[i].Begin}-{ordered[i].End})");
        return (tensors, metadata, dataStart);
    }

    static SafeTensorInfo ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string Where() => $"{path}: tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object) throw new ChatForgeException($"{Where()}: entry is not an object");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw new ChatForgeException($"{Where()}: missing dtype");
        var dtype = dt.GetString()!;
        if (!Dtypes.TryGetValue(dtype, out var info)) throw new ChatForgeException($"{Where()}: unknown dtype '{dtype}'");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw new ChatForgeException($"{Where()}: missing shape");
        var shape = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0) throw new ChatForgeException($"{Where()}: shape has an invalid dimension {d}");
            shape.Add(v);
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ChatForgeException($"{Where()}: data_offsets must be [begin, end]");
        if (!off[0].TryGetInt64(out var begin) || !off[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw new ChatForgeException($"{Where()}: data_offsets [{off[0]}, {off[1]}] are invalid");
        if (end > dataLength) throw new ChatForgeException($"{Where()}: data_offsets [{begin}, {end}] run past the end of the data ({dataLength} bytes)");
        long elements = 1;
        foreach (var d in shape)
        {
            try { elements = checked(elements * d); }
            catch (OverflowException) { throw new ChatForgeException($"{Where()}: shape [{string.Join(", ", shape)}] is too large"); }
        }
        if (elements * info.Size != end - begin)
            throw new ChatForgeException($"{Where()}: shape [{string.Join(", ", shape)}] × {dtype} is {elements * info.Size} bytes but data_offsets span {end - begin}");
        return new SafeTensorInfo(name, dtype, shape.ToArray(), begin, end);
    }

    /// <summary>Loads every tensor (on the CPU).</summary>
    public static Dictionary<string, Tensor> Load(string path) => Load(path, out _);

    public static Dictionary<string, Tensor> Load(string path, out Dictionary<string, string> metadata)
    {
        var (tensors, meta, dataStart) = ReadHeader(path);
        metadata = meta;
        var result = new Dictionary<string, Tensor>();
        using var fs = File.OpenRead(path);
        foreach (var t in tensors)
        {
            var buf = new byte[t.End - t.Begin];
            fs.Seek(dataStart + t.Begin, SeekOrigin.Begin);
            fs.ReadExactly(buf);
            var tensor = empty(t.Shape, dtype: Dtypes[t.Dtype].Type);
            if (buf.Length > 0) tensor.bytes = buf;
            result[t.Name] = tensor;
        }
        return result;
    }
}
