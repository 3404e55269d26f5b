using System.Text.Json;
using Research.Runs;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// Writes one safetensors file, the only code that does. The layout is fixed up front from names, dtypes and shapes:
/// tensors sorted by name (ordinal) in the header and laid out back to back in that order in the data area,
/// <c>__metadata__</c> first with its keys sorted, the header JSON space-padded so the data starts 8-byte aligned.
/// Tensors then arrive one at a time, in any order, each written at its own offset into a temp file;
/// <see cref="Commit"/> flushes that file and renames it into place, disposing without a commit removes it.
/// </summary>
public sealed class SafetensorsFileWriter : IDisposable
{
    readonly Dictionary<string, TensorEntry> _entries = new(StringComparer.Ordinal);
    readonly HashSet<string> _written = new(StringComparer.Ordinal);
    readonly PendingFile _file;
    readonly long _dataStart;
    long _unflushed;

    /// <summary>Bytes written between two requests to start writeback (<see cref="FileSystemCalls.StartWriteback"/>).</summary>
    const long WritebackEvery = 8 << 20;

    public SafetensorsFileWriter(string path, IEnumerable<PlannedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        Path = path;
        var planned = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in planned) Safetensors.CheckName(path, p.Name, names);
        planned.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var layout = new List<TensorEntry>(planned.Count);
        long offset = 0;
        foreach (var p in planned)
        {
            var e = new TensorEntry(p.Name, p.DType, p.Shape, offset, offset + p.Bytes);
            layout.Add(e);
            _entries[e.Name] = e;
            offset = e.End;
        }
        Entries = layout;
        var header = Header(layout, metadata);
        _dataStart = 8 + header.Length;
        // Unbuffered: tensors arrive as large spans, and a buffer would be managed memory of its own.
        _file = new PendingFile(path, bufferSize: 0);
        try
        {
            Span<byte> len = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            _file.Stream.Write(len);
            _file.Stream.Write(header);
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    public string Path { get; }

    /// <summary>The file's layout, in data order.</summary>
    public IReadOnlyList<TensorEntry> Entries { get; }

    /// <summary>Writes a planned tensor (any device; copied to CPU) at its offset.</summary>
    public void Write(string name, Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (!_entries.TryGetValue(name, out var e)) throw new InvalidOperationException($"{Path}: tensor '{name}' is not in the planned layout");
        if (_written.Contains(name)) throw new InvalidOperationException($"{Path}: tensor '{name}' is written twice");
        if (!Safetensors.TryDTypeOf(t.dtype, out var code) || code != e.DType || !t.shape.SequenceEqual(e.Shape))
            throw new InvalidOperationException($"tensor '{name}' is {t.dtype} [{string.Join(", ", t.shape)}], planned {e.DType} [{string.Join(", ", e.Shape)}]");
        if (e.ByteLength > 0)
        {
            var s = _file.Stream;
            s.Position = _dataStart + e.Begin;
            using var noGrad = no_grad();
            using var cpu = t.cpu();
            using var c = cpu.contiguous();
            Safetensors.ForEachChunk(c, (span, _) => s.Write(span));
            // Hand what is written to the disk while the caller computes the next tensor (a merge, a checkpoint), rather than
            // all of it at the final flush: a streaming merge went from compute-then-flush to the two overlapped.
            if ((_unflushed += e.ByteLength) >= WritebackEvery)
            {
                FileSystemCalls.StartWriteback(s.SafeFileHandle);
                _unflushed = 0;
            }
        }
        _written.Add(name);
    }

    /// <summary>Checks every planned tensor was written, then puts the file in place (flushed to disk, renamed).</summary>
    public void Commit()
    {
        if (_written.Count != _entries.Count)
            throw new InvalidOperationException(
                $"{Path}: {_entries.Count - _written.Count} of {_entries.Count} planned tensors were not written (first: '{_entries.Keys.Where(n => !_written.Contains(n)).Min(StringComparer.Ordinal)}')");
        _file.Commit();
    }

    /// <summary>Removes the temp file unless committed.</summary>
    public void Dispose() => _file.Dispose();

    static byte[] Header(IReadOnlyList<TensorEntry> layout, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var e in layout)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.DType);
                w.WriteStartArray("shape");
                foreach (var d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(e.Begin);
                w.WriteNumberValue(e.End);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        var pad = (int)((8 - ms.Length % 8) % 8);
        for (var i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }
}
