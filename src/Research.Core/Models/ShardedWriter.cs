using System.Text.Json;
using Research.Runs;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// Writes a checkpoint's weights one tensor at a time without holding them: the layout is planned up front from
/// names, dtypes and shapes (tensors in plan order, a new shard when the next tensor would pass <c>maxShardBytes</c>,
/// a tensor larger than the bound gets its own; one shard is model.safetensors, several are
/// model-0000i-of-0000N.safetensors plus model.safetensors.index.json). Each shard is a
/// <see cref="SafetensorsFileWriter"/> (tensors sorted by name inside it), streamed to a temp file and renamed into
/// place when its last tensor arrives; the index is written last by <see cref="Finish"/>. Tensors must arrive in plan
/// order with the planned dtype and shape. <see cref="Safetensors.SaveSharded"/> is this writer fed from a list.
/// </summary>
public sealed class ShardedSafetensorsWriter : IDisposable
{
    readonly string _dir;
    readonly List<List<PlannedTensor>> _shards = [];
    readonly List<string> _files = [];
    readonly IReadOnlyDictionary<string, string>? _metadata;
    int _shard = -1, _inShard;
    SafetensorsFileWriter? _current;

    public ShardedSafetensorsWriter(string dir, IReadOnlyList<PlannedTensor> plan, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        _dir = dir;
        _metadata = metadata;
        var names = new HashSet<string>(StringComparer.Ordinal);
        long current = 0;
        _shards.Add([]);
        foreach (var p in plan)
        {
            Safetensors.CheckName(dir, p.Name, names);
            if (_shards[^1].Count > 0 && current + p.Bytes > maxShardBytes)
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

    /// <summary>The shard file names, in order.</summary>
    public IReadOnlyList<string> Files => _files;

    /// <summary>Every file <see cref="Finish"/> leaves in the directory: the shards, and the index when there are several.</summary>
    public IReadOnlyList<string> Outputs => _shards.Count == 1 ? _files : [.. _files, Safetensors.IndexFileName];

    /// <summary>Writes the next tensor (any device; copied to CPU) into its shard.</summary>
    public void Add(string name, Tensor t)
    {
        if (_current is null)
        {
            if (_shard + 1 >= _shards.Count || _shards[_shard + 1].Count == 0)
                throw new InvalidOperationException("sharded writer received more tensors than planned");
            OpenNext();
        }
        var p = _shards[_shard][_inShard];
        if (p.Name != name) throw new InvalidOperationException($"sharded writer expected tensor '{p.Name}' next, got '{name}'");
        _current!.Write(name, t);
        _inShard++;
        if (_inShard == _shards[_shard].Count) CloseCurrent();
    }

    void OpenNext()
    {
        _shard++;
        _inShard = 0;
        _current = new SafetensorsFileWriter(Path.Combine(_dir, _files[_shard]), _shards[_shard], _metadata);
    }

    void CloseCurrent()
    {
        _current!.Commit();
        _current.Dispose();
        _current = null;
    }

    /// <summary>Checks every planned tensor arrived and writes the index (when sharded).</summary>
    public void Finish()
    {
        if (_shard < 0 && _shards[0].Count == 0)
        {
            // Nothing planned: an empty model.safetensors.
            OpenNext();
            CloseCurrent();
        }
        if (_current is not null || _shard != _shards.Count - 1)
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

    /// <summary>Removes a half-written shard (the shards already renamed stay).</summary>
    public void Dispose()
    {
        _current?.Dispose();
        _current = null;
    }
}
