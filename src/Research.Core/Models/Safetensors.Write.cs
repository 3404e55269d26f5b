using static TorchSharp.torch;

namespace Research.Models;

/// <summary>Saving from tensors in hand: thin calls into <see cref="SafetensorsFileWriter"/> and <see cref="ShardedSafetensorsWriter"/>.</summary>
public static partial class Safetensors
{
    /// <summary>Writes one safetensors file (tensors sorted by name, metadata if given), atomically.</summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var plan = Plan(path, tensors);
        using var writer = new SafetensorsFileWriter(path, plan.Select(p => p.Planned), metadata);
        foreach (var (p, t) in plan) writer.Write(p.Name, t);
        writer.Commit();
    }

    /// <summary>
    /// Writes a checkpoint directory: a single model.safetensors when everything fits in one shard of
    /// <paramref name="maxShardBytes"/>, else model-0000i-of-0000N.safetensors shards (tensors in the given
    /// order, a new shard when the next tensor would overflow; a tensor larger than the limit gets its own)
    /// plus model.safetensors.index.json. Shards and index from an earlier save in the same layout family are removed.
    /// </summary>
    public static void SaveSharded(string dir, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes)
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var plan = Plan(dir, tensors);
        IReadOnlyList<string> written;
        using (var writer = new ShardedSafetensorsWriter(dir, plan.Select(p => p.Planned).ToList(), maxShardBytes))
        {
            foreach (var (p, t) in plan) writer.Add(p.Name, t);
            writer.Finish();
            written = writer.Outputs;
        }
        RemoveStale(dir, written);
    }

    /// <summary>Leaves one unambiguous layout behind: drops the checkpoint files of an earlier save that this one did not write.</summary>
    static void RemoveStale(string dir, IReadOnlyList<string> written)
    {
        foreach (var f in Directory.EnumerateFiles(dir))
        {
            var name = System.IO.Path.GetFileName(f);
            var ours = name == SingleFileName || name == IndexFileName
                || (name.StartsWith("model-", StringComparison.Ordinal) && name.Contains("-of-", StringComparison.Ordinal)
                    && name.EndsWith(".safetensors", StringComparison.Ordinal));
            if (ours && !written.Contains(name, StringComparer.Ordinal)) File.Delete(f);
        }
    }

    /// <summary>Checks the tensors can be saved (names, liveness, dtypes) and plans each one.</summary>
    static List<(PlannedTensor Planned, Tensor Tensor)> Plan(string target, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = new List<(PlannedTensor, Tensor)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            CheckName(target, name, names);
            if (t is null || t.IsInvalid) throw new SafetensorsException($"{target}: tensor '{name}' is null or disposed.", target, name);
            if (!TryDTypeOf(t.dtype, out var code))
                throw new SafetensorsException($"{target}: tensor '{name}' has dtype {t.dtype}, which safetensors here does not store (supported: {string.Join(", ", SupportedDTypes)}).", target, name);
            list.Add((new PlannedTensor(name, code, t.shape), t));
        }
        return list;
    }

    /// <summary>Refuses an empty name, the reserved <c>__metadata__</c>, and a name already in <paramref name="seen"/> (which it joins).</summary>
    internal static void CheckName(string target, string name, HashSet<string> seen)
    {
        if (string.IsNullOrEmpty(name)) throw new SafetensorsException($"{target}: a tensor has an empty name.", target);
        if (name == "__metadata__") throw new SafetensorsException($"{target}: '__metadata__' is reserved and cannot name a tensor.", target, name);
        if (!seen.Add(name)) throw new SafetensorsException($"{target}: tensor '{name}' is given twice.", target, name);
    }
}
