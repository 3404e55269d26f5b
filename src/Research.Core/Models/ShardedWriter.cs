using System.Text.Json;
using Research.Runs;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>One tensor the writer will receive: name, safetensors dtype code ("F32", "BF16", ...) and shape.</summary>
public sealed record PlannedTensor(string Name, string DType, long[] Shape)
{
    public long Bytes => Shape.Aggregate(1L, (a, d) => a * d) * Safetensors.DTypeSize(DType);
}

/// <summary>
/// Writes a checkpoint's weights one tensor at a time without holding them: the layout is planned up front from
/// names, dtypes and shapes (a new shard when the next tensor would pass <c>maxShardBytes</c>; one shard is
/// model.safetensors, several are model-0000i-of-0000N.safetensors plus model.safetensors.index.json). Each shard
/// is streamed to a temp file and renamed into place when its last tensor arrives; the index is written last
/// by <see cref="Finish"/>. Tensors must arrive in plan order with the planned dtype and shape.
/// </summary>
public sealed class ShardedSafetensorsWriter : IDisposable
{
    readonly string _dir;
    readonly List<List<PlannedTensor>> _shards = [];
    readonly List<string> _files = [];
    readonly IReadOnlyDictionary<string, string>? _metadata;
    int _shard = -1, _inShard;
    FileStream? _stream;
    string? _tmp;

    public ShardedSafetensorsWriter(string dir, IReadOnlyList<PlannedTensor> plan, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        _dir = dir;
        _metadata = metadata;
        long current = 0;
        foreach (var p in plan)
        {
            if (_shards.Count == 0 || (_shards[^1].Count > 0 && current + p.Bytes > maxShardBytes))
            {
                _shards.Add([]);
                current = 0;
            }
            _shards[^1].Add(p);
            current += p.Bytes;
        }
        for (var i = 0; i < _shards.Count; i++)
            _files.Add(_shards.Count == 1 ? Safetensors.SingleFileName : $"model-{i + 1:D5}-of-{_shards.Count:D5}.safetensors");
        Directory.CreateDirectory(dir);
    }

    public int ShardCount => _shards.Count;
    public IReadOnlyList<string> Files => _files;

    /// <summary>Writes the next tensor (any device; copied to CPU) into its shard.</summary>
    public void Add(string name, Tensor t)
    {
        if (_shard < 0 || _inShard == _shards[_shard].Count) OpenNext();
        var p = _shards[_shard][_inShard];
        if (p.Name != name) throw new InvalidOperationException($"sharded writer expected tensor '{p.Name}' next, got '{name}'");
        if (!Safetensors.TryDTypeOf(t.dtype, out var code) || code != p.DType || !t.shape.SequenceEqual(p.Shape))
            throw new InvalidOperationException($"tensor '{name}' is {t.dtype} [{string.Join(", ", t.shape)}], planned {p.DType} [{string.Join(", ", p.Shape)}]");
        using (var cpu = t.cpu())
        using (var c = cpu.contiguous())
        using (var flat = c.view(-1))
        {
            var elem = c.element_size();
            var per = Math.Max(1, (1L << 30) / elem);
            for (long start = 0; start < flat.numel(); start += per)
            {
                using var part = flat.narrow(0, start, Math.Min(per, flat.numel() - start));
                _stream!.Write(part.bytes);
            }
        }
        _inShard++;
        if (_inShard == _shards[_shard].Count) CloseCurrent();
    }

    void OpenNext()
    {
        _shard++;
        if (_shard >= _shards.Count) throw new InvalidOperationException("sharded writer received more tensors than planned");
        _inShard = 0;
        _tmp = Path.Combine(_dir, $"{_files[_shard]}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        // Unbuffered: tensors arrive as large spans, and a buffer per shard would be managed memory of its own.
        _stream = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        var header = Header(_shards[_shard]);
        Span<byte> len = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        _stream.Write(len);
        _stream.Write(header);
    }

    void CloseCurrent()
    {
        _stream!.Flush(flushToDisk: true);
        _stream.Dispose();
        _stream = null;
        File.Move(_tmp!, Path.Combine(_dir, _files[_shard]), overwrite: true);
        _tmp = null;
    }

    /// <summary>Checks every planned tensor arrived and writes the index (when sharded).</summary>
    public void Finish()
    {
        if (_shards.Count == 0) { Safetensors.Save(Path.Combine(_dir, Safetensors.SingleFileName), []); return; }
        if (_shard != _shards.Count - 1 || _inShard != _shards[^1].Count)
            throw new InvalidOperationException("sharded writer finished before every planned tensor was written");
        if (_shards.Count == 1) return;
        AtomicFile.Write(Path.Combine(_dir, Safetensors.IndexFileName), s =>
        {
            using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", _shards.Sum(sh => sh.Sum(p => p.Bytes)));
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var (k, v) in _shards.SelectMany((sh, i) => sh.Select(p => (p.Name, _files[i]))).OrderBy(x => x.Name, StringComparer.Ordinal))
                w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    byte[] Header(List<PlannedTensor> shard) =>
        Safetensors.BuildHeader(shard.Select(p => (p.Name, p.DType, p.Shape, p.Bytes)), _metadata);

    /// <summary>Removes a half-written shard (the shards already renamed stay).</summary>
    public void Dispose()
    {
        _stream?.Dispose();
        _stream = null;
        if (_tmp is not null && File.Exists(_tmp)) File.Delete(_tmp);
        _tmp = null;
    }
}
