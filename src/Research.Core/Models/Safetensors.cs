using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>One tensor's header entry: dtype code as in the file ("F32", "BF16", ...), shape, and byte range relative to the data area.</summary>
public sealed record TensorEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>A malformed, truncated or missing safetensors file or checkpoint. The message always names the file, and the tensor where one is involved.</summary>
public sealed class SafetensorsException : Exception
{
    public SafetensorsException(string message, string file, string? tensor = null, Exception? inner = null)
        : base(message, inner)
    {
        FilePath = file;
        TensorName = tensor;
    }

    /// <summary>The file (or directory) the error is about.</summary>
    public string FilePath { get; }

    /// <summary>The tensor the error is about, where one is involved.</summary>
    public string? TensorName { get; }
}

/// <summary>
/// A safetensors file opened read-only through a memory map. The whole header is validated when the
/// file is opened (dtypes, shapes, offsets in range, sizes consistent, no overlaps or holes, nothing
/// trailing); tensors are then copied out one at a time on <see cref="Read"/>.
/// </summary>
public sealed unsafe partial class SafetensorsFile : IDisposable
{
    /// <summary>Headers above this size are refused before anything is allocated (the reference implementation uses the same bound).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    readonly MemoryMappedFile _map;
    readonly Microsoft.Win32.SafeHandles.SafeFileHandle _file;   // held open as long as the mapping
    readonly long _length;
    readonly MemoryMappedViewAccessor _view;
    byte* _base;
    readonly long _dataStart;
    readonly Dictionary<string, TensorEntry> _byName;

    public string Path { get; }
    public IReadOnlyList<TensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Byte offset of the data area in the file (8 + header length).</summary>
    public long DataStart => _dataStart;

    SafetensorsFile(string path, FileStream file, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePtr, long dataStart,
        List<TensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        _file = file.SafeFileHandle;
        _length = file.Length;
        _map = map;
        _view = view;
        _base = basePtr;
        _dataStart = dataStart;
        Entries = entries;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        Metadata = metadata;
    }

    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            throw new SafetensorsException(
                $"{path} is a directory, not a safetensors file; use Safetensors.LoadDirectory for a checkpoint directory.", path);
        if (!File.Exists(path))
            throw new SafetensorsException(
                $"Safetensors file not found: {System.IO.Path.GetFullPath(path)}. Check the path (a checkpoint directory holds model.safetensors or model.safetensors.index.json and its shards).",
                path);

        FileStream fs;
        try { fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException($"Cannot open safetensors file {path}: {e.Message}", path, null, e);
        }

        var length = fs.Length;
        if (length < 8)
        {
            fs.Dispose();
            throw new SafetensorsException(
                $"{path}: file is {length} bytes, shorter than the 8-byte header length; it is not a safetensors file or was truncated.", path);
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* ptr = null;
        try
        {
            // Copy-on-write (a private mapping of a file opened read-only): a zero-copy view (View) that someone writes to gets its
            // own pages; the file is never changed and the writer does not fault.
            var (dataStart, entries, metadata) = ParseHeader(path, fs.SafeFileHandle, length);
            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.CopyOnWrite, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.CopyOnWrite);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            var file = new SafetensorsFile(path, fs, map, view, ptr, dataStart, entries, metadata);
            file.EnsureUnchanged();                                                   // it did not shrink between the header and the map
            return file;
        }
        catch (Exception e)
        {
            if (ptr != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            if (map is not null) map.Dispose(); else fs.Dispose();
            if (e is SafetensorsException) throw;
            throw new SafetensorsException($"Cannot read safetensors file {path}: {e.Message}", path, null, e);
        }
    }

    /// <summary>The header, read from the file (not the map) and checked against the file's size before anything is mapped.</summary>
    static (long DataStart, List<TensorEntry> Entries, Dictionary<string, string> Metadata) ParseHeader(string path, Microsoft.Win32.SafeHandles.SafeFileHandle file, long fileLength)
    {
        Span<byte> lengthField = stackalloc byte[8];
        ReadExactly(path, file, lengthField, 0);
        ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(lengthField);
        if (n > (ulong)(fileLength - 8))
            throw new SafetensorsException(
                $"{path}: header length {n} is larger than the {fileLength - 8} bytes after the length field; the file is truncated or not a safetensors file.", path);
        if (n > MaxHeaderBytes)
            throw new SafetensorsException($"{path}: header length {n} exceeds the {MaxHeaderBytes}-byte limit.", path);
        if (n < 2)
            throw new SafetensorsException($"{path}: header length {n} is too small to hold a JSON object.", path);

        var headerLen = (int)n;
        var dataStart = 8 + (long)n;
        var dataLength = fileLength - dataStart;
        var header = new byte[headerLen];
        ReadExactly(path, file, header, 8);

        JsonDocument doc;
        try { doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e)
        {
            throw new SafetensorsException($"{path}: header is not valid JSON: {e.Message}", path, null, e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException($"{path}: header JSON is a {doc.RootElement.ValueKind}, expected an object.", path);

            var entries = new List<TensorEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                var name = prop.Name;
                if (!seen.Add(name))
                    throw new SafetensorsException($"{path}: header lists '{name}' twice.", path, name == "__metadata__" ? null : name);
                if (name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new SafetensorsException($"{path}: __metadata__ must be an object of strings.", path);
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new SafetensorsException($"{path}: __metadata__ value for '{m.Name}' is a {m.Value.ValueKind}, expected a string.", path);
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(path, name, prop.Value, dataLength));
            }

            CheckLayout(path, entries, dataLength);
            return (dataStart, entries, metadata);
        }
    }

    static void ReadExactly(string path, Microsoft.Win32.SafeHandles.SafeFileHandle file, Span<byte> into, long offset)
    {
        while (into.Length > 0)
        {
            var read = RandomAccess.Read(file, into, offset);
            if (read == 0) throw new SafetensorsException($"{path}: the file ended at byte {offset} while its header was read; it shrank while being opened.", path);
            into = into[read..];
            offset += read;
        }
    }

    /// <summary>
    /// Throws when the file's size is not what it was when opened. The mapping's pages past a new end would raise SIGBUS,
    /// which kills the process; this turns a file rewritten in place before a tensor is read into an error naming it.
    /// Writers here never rewrite in place (temp file, rename), so only another program can.
    /// </summary>
    void EnsureUnchanged()
    {
        var now = RandomAccess.GetLength(_file);
        if (now != _length)
            throw new SafetensorsException(
                $"{Path}: the file changed size from {_length} to {now} bytes while it was open; another program rewrote it in place. " +
                "Replace such files by writing a new file and renaming it over the old one, then run again.", Path);
    }

    static TensorEntry ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        SafetensorsException Bad(string what) => new($"{path}: tensor '{name}': {what}", path, name);

        if (e.ValueKind != JsonValueKind.Object) throw Bad($"entry is a {e.ValueKind}, expected an object with dtype, shape and data_offsets.");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Bad("missing or non-string 'dtype'.");
        var dtype = dt.GetString()!;
        if (!Safetensors.TryScalarType(dtype, out _))
            throw Bad($"unknown dtype '{dtype}' (supported: {string.Join(", ", Safetensors.SupportedDTypes)}).");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Bad("missing or non-array 'shape'.");
        var shape = new long[sh.GetArrayLength()];
        var i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw Bad($"shape {sh.GetRawText()} must hold non-negative integers.");
            shape[i++] = v;
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad("missing 'data_offsets' or it is not [begin, end].");
        var begin = ReadOffset(off[0]);
        var end = ReadOffset(off[1]);
        if (begin is null || end is null) throw Bad($"data_offsets {off.GetRawText()} must be two non-negative integers.");
        if (end < begin) throw Bad($"data_offsets {off.GetRawText()}: end is before begin.");
        if (end > dataLength)
            throw Bad($"data_offsets {off.GetRawText()} run past the end of the data area ({dataLength} bytes); the file is truncated or the offsets are wrong.");

        long expected;
        try
        {
            checked
            {
                // Zero-size dimensions make the element count 0 whatever the others are, but libtorch still multiplies the
                // others into strides: their product (and its byte size) must fit 64 bits too, or a stride overflows.
                long count = 1, strides = 1;
                foreach (var d in shape)
                {
                    count *= d;
                    strides *= Math.Max(d, 1);
                }
                expected = count * Safetensors.DTypeSize(dtype);
                _ = strides * Safetensors.DTypeSize(dtype);
            }
        }
        catch (OverflowException) { throw Bad($"shape {sh.GetRawText()} is too large: the product of its dimensions overflows 64 bits."); }
        if (end - begin != expected)
            throw Bad($"data_offsets {off.GetRawText()} cover {end - begin} bytes, but shape {sh.GetRawText()} of {dtype} needs {expected}.");
        return new TensorEntry(name, dtype, shape, begin.Value, end.Value);
    }

    static long? ReadOffset(JsonElement e) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var v) && v >= 0 ? v : null;

    /// <summary>Sorts entries by offset and checks they tile the data area exactly: no overlap, no hole, nothing trailing.</summary>
    static void CheckLayout(string path, List<TensorEntry> entries, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin)
            : a.End != b.End ? a.End.CompareTo(b.End) : string.CompareOrdinal(a.Name, b.Name));
        long covered = 0;
        TensorEntry? prev = null;
        foreach (var e in entries)
        {
            if (e.Begin < covered)
                throw new SafetensorsException(
                    $"{path}: tensor '{e.Name}' [{e.Begin}, {e.End}) overlaps tensor '{prev!.Name}' [{prev.Begin}, {prev.End}).", path, e.Name);
            if (e.Begin > covered)
                throw new SafetensorsException(
                    $"{path}: bytes [{covered}, {e.Begin}) before tensor '{e.Name}' belong to no tensor (the format allows no holes).", path, e.Name);
            covered = e.End;
            prev = e;
        }
        if (covered != dataLength)
            throw new SafetensorsException(
                $"{path}: tensors cover {covered} bytes of the {dataLength}-byte data area; {dataLength - covered} trailing bytes belong to no tensor"
                + (prev is null ? "." : $" (last tensor '{prev.Name}')."), path, prev?.Name);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TensorEntry Entry(string name) =>
        _byName.TryGetValue(name, out var e) ? e
        : throw new SafetensorsException($"{Path}: no tensor named '{name}' (the file holds {_byName.Count}).", Path, name);

    /// <summary>A fresh CPU tensor (its own memory, not the map's) in the stored dtype.</summary>
    public Tensor Read(string name)
    {
        ObjectDisposedException.ThrowIf(_base == null, this);
        var e = Entry(name);
        EnsureUnchanged();
        if (e.DType == "BOOL" && e.ByteLength > 0)
        {
            var bad = FirstNonBool(_base + _dataStart + e.Begin, e.ByteLength);
            if (bad >= 0)
                throw new SafetensorsException(
                    $"{Path}: tensor '{name}' is BOOL but byte {bad} of its data is {_base[_dataStart + e.Begin + bad]}, not 0 or 1.", Path, name);
        }
        var t = empty(e.Shape, Safetensors.ScalarTypeOf(e.DType), CPU);
        try
        {
            Safetensors.CopyIn(t, _base + _dataStart + e.Begin, e.ByteLength);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    static long FirstNonBool(byte* p, long n)
    {
        for (long start = 0; start < n; start += int.MaxValue)
        {
            var len = (int)Math.Min(int.MaxValue, n - start);
            var i = new ReadOnlySpan<byte>(p + start, len).IndexOfAnyExcept((byte)0, (byte)1);
            if (i >= 0) return start + i;
        }
        return -1;
    }

    /// <summary>Closes the file; the mapping itself goes when the last zero-copy view (<see cref="View"/>) is freed.</summary>
    public void Dispose()
    {
        lock (_viewLock)
        {
            if (_base == null) return;
            _base = null;
            if (_liveViews > 0) { _unmapWhenViewsFreed = true; return; }
        }
        Unmap();
    }

    void Unmap()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}

static unsafe class BitConverterLE
{
    public static ulong ReadUInt64(byte* p) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(p, 8));
}

/// <summary>Reads and writes safetensors files and Hugging Face style checkpoint directories.</summary>
public static partial class Safetensors
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    static readonly (string Code, ScalarType Type, int Size)[] DTypes =
    [
        ("F64", ScalarType.Float64, 8), ("F32", ScalarType.Float32, 4), ("F16", ScalarType.Float16, 2),
        ("BF16", ScalarType.BFloat16, 2), ("I64", ScalarType.Int64, 8), ("I32", ScalarType.Int32, 4),
        ("I16", ScalarType.Int16, 2), ("I8", ScalarType.Int8, 1), ("U8", ScalarType.Byte, 1), ("BOOL", ScalarType.Bool, 1),
    ];

    public static IReadOnlyList<string> SupportedDTypes { get; } = DTypes.Select(d => d.Code).ToArray();

    public static bool TryScalarType(string dtype, out ScalarType type)
    {
        foreach (var d in DTypes)
            if (d.Code == dtype) { type = d.Type; return true; }
        type = default;
        return false;
    }

    public static ScalarType ScalarTypeOf(string dtype) =>
        TryScalarType(dtype, out var t) ? t : throw new ArgumentException($"Unknown safetensors dtype '{dtype}'.", nameof(dtype));

    public static bool TryDTypeOf(ScalarType type, out string dtype)
    {
        foreach (var d in DTypes)
            if (d.Type == type) { dtype = d.Code; return true; }
        dtype = "";
        return false;
    }

    public static int DTypeSize(string dtype)
    {
        foreach (var d in DTypes)
            if (d.Code == dtype) return d.Size;
        throw new ArgumentException($"Unknown safetensors dtype '{dtype}'.", nameof(dtype));
    }

    // ---- raw byte copies between tensors and memory, chunked so tensors over 2 GiB work ----

    // Spans are int-sized, so tensors are copied in chunks of at most this many bytes (a field, not a
    // constant, so tests can shrink it to exercise the chunked path on small tensors).
    static long ChunkBytes = 1L << 30;

    internal static unsafe void CopyIn(Tensor dst, byte* src, long nbytes)
    {
        if (nbytes == 0) return;
        ForEachChunk(dst, (span, offset) => new ReadOnlySpan<byte>(src + offset, span.Length).CopyTo(span));
    }

    internal static void ForEachChunk(Tensor t, SpanAction action)
    {
        var elem = t.element_size();
        var n = t.numel();
        var chunk = Volatile.Read(ref ChunkBytes);
        if (n * elem <= chunk)
        {
            action(t.bytes, 0);
            return;
        }
        using var flat = t.view(-1);
        var per = Math.Max(1, chunk / elem);
        for (long start = 0; start < n; start += per)
        {
            using var part = flat.narrow(0, start, Math.Min(per, n - start));
            action(part.bytes, start * elem);
        }
    }

    internal delegate void SpanAction(Span<byte> span, long offset);

    // ---- reading ----

    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = SafetensorsFile.Open(path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in f.Entries) result[e.Name] = f.Read(e.Name);
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint directory: model.safetensors if present, else model.safetensors.index.json and the
    /// shards its weight_map names (every listed tensor must be in the shard the index names).
    /// </summary>
    public static Dictionary<string, Tensor> LoadDirectory(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir))
            throw new SafetensorsException(
                File.Exists(dir)
                    ? $"{dir} is a file, not a checkpoint directory; use Safetensors.Load for a single file."
                    : $"Checkpoint directory not found: {System.IO.Path.GetFullPath(dir)}. Check the path.", dir);
        var single = System.IO.Path.Combine(dir, SingleFileName);
        if (File.Exists(single)) return Load(single);
        var index = System.IO.Path.Combine(dir, IndexFileName);
        if (!File.Exists(index))
            throw new SafetensorsException(
                $"{System.IO.Path.GetFullPath(dir)} holds neither {SingleFileName} nor {IndexFileName}; is it a safetensors checkpoint directory?", dir);

        var weightMap = ReadIndex(index);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var group in weightMap.GroupBy(kv => kv.Value, StringComparer.Ordinal))
            {
                var shardPath = System.IO.Path.Combine(dir, group.Key);
                if (!File.Exists(shardPath))
                    throw new SafetensorsException(
                        $"{index}: shard {shardPath} (holding tensor '{group.First().Key}' among others) does not exist; the checkpoint is incomplete.",
                        shardPath, group.First().Key);
                using var f = SafetensorsFile.Open(shardPath);
                foreach (var (name, _) in group)
                {
                    if (!f.Contains(name))
                        throw new SafetensorsException(
                            $"{index} puts tensor '{name}' in {shardPath}, which does not hold it.", shardPath, name);
                    result[name] = f.Read(name);
                }
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>The weight_map of a model.safetensors.index.json: tensor name to shard file name (validated to stay in the directory).</summary>
    public static IReadOnlyDictionary<string, string> ReadIndex(string indexPath)
    {
        string text;
        try { text = File.ReadAllText(indexPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafetensorsException($"Cannot read index {indexPath}: {e.Message}", indexPath, null, e);
        }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e)
        {
            throw new SafetensorsException($"{indexPath}: not valid JSON: {e.Message}", indexPath, null, e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException($"{indexPath}: expected an object with a \"weight_map\" object.", indexPath);
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new SafetensorsException($"{indexPath}: weight_map entry for tensor '{p.Name}' is not a file name.", indexPath, p.Name);
                var file = p.Value.GetString()!;
                if (file.Length == 0 || file != System.IO.Path.GetFileName(file) || file is "." or ".." || file.Contains('\\'))
                    throw new SafetensorsException(
                        $"{indexPath}: weight_map puts tensor '{p.Name}' in '{file}', which is not a plain file name in the checkpoint directory.", indexPath, p.Name);
                if (!map.TryAdd(p.Name, file))
                    throw new SafetensorsException($"{indexPath}: weight_map lists tensor '{p.Name}' twice.", indexPath, p.Name);
            }
            return map;
        }
    }
}
