using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Research.Data;
using Research.Models;
using Research.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Stages.Merge;

/// <summary>
/// The weights of one checkpoint directory, opened lazily: model.safetensors, or the shards that
/// model.safetensors.index.json names (each shard is memory-mapped when first needed). Nothing is read until
/// <see cref="Read"/> hands out one tensor.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    readonly Dictionary<string, string> _shardOf = new(StringComparer.Ordinal);
    readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);
    readonly Dictionary<string, TensorEntry> _entries = new(StringComparer.Ordinal);

    public string Dir { get; }
    public IReadOnlyList<string> Names { get; }

    public CheckpointReader(string dir)
    {
        Dir = dir;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: no such checkpoint directory");
        var single = Path.Combine(dir, Safetensors.SingleFileName);
        var index = Path.Combine(dir, Safetensors.IndexFileName);
        if (System.IO.File.Exists(single))
            foreach (var e in Shard(Safetensors.SingleFileName).Entries) _shardOf[e.Name] = Safetensors.SingleFileName;
        else if (System.IO.File.Exists(index))
            foreach (var (name, file) in Safetensors.ReadIndex(index)) _shardOf[name] = file;
        else
            throw new SafetensorsException($"{dir} holds neither {Safetensors.SingleFileName} nor {Safetensors.IndexFileName}", dir);
        foreach (var (name, file) in _shardOf)
        {
            var f = Shard(file);
            if (!f.Contains(name)) throw new SafetensorsException($"{index} puts tensor '{name}' in {f.Path}, which does not hold it", f.Path, name);
            _entries[name] = f.Entry(name);
        }
        Names = _shardOf.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
    }

    SafetensorsFile Shard(string file)
    {
        if (_open.TryGetValue(file, out var f)) return f;
        var path = Path.Combine(Dir, file);
        if (!System.IO.File.Exists(path)) throw new SafetensorsException($"{Dir}: shard {file} is missing; the checkpoint is incomplete", path);
        return _open[file] = SafetensorsFile.Open(path);
    }

    public bool Contains(string name) => _entries.ContainsKey(name);
    public TensorEntry Entry(string name) => _entries[name];

    /// <summary>
    /// One tensor, as a zero-copy view of its memory-mapped shard (<see cref="SafetensorsFile.View"/>): nothing is copied and
    /// the merge allocates no memory for its inputs. When the caller frees the tensor its pages leave this process's resident
    /// set, so resident memory holds the tensors in flight, not the inputs already passed.
    /// </summary>
    public Tensor Read(string name) => Shard(_shardOf[name]).View(name);

    public void Dispose()
    {
        foreach (var f in _open.Values) f.Dispose();
        _open.Clear();
    }
}

/// <summary>What a streaming merge did. Peaks count the tensors copied out of the inputs plus the merged and
/// cast outputs that were alive at once (the rules' own temporaries are not counted; they live one tensor at a time).</summary>
public sealed record MergeReport(string OutDir, int Tensors, int Shards, int PeakOpenTensors, long PeakOpenBytes);

/// <summary>
/// Merges checkpoint directories into a new one, one tensor name at a time, so memory holds only that tensor
/// of each input and its result. Before anything is written every input's headers are checked: the same
/// tensor names (else "tensor 'X' ... missing": different architectures), the same shapes (embed_tokens and
/// lm_head with different row counts: "vocabularies differ"). Dtypes: each tensor is computed in float32 and
/// written in the base model's dtype for that tensor (the first model's for linear), or in the config's
/// <c>dtype</c>; non-float tensors are copied from the base unchanged. The output directory appears
/// atomically with the weights (model.safetensors, or shards + index past <c>maxShardBytes</c>), and the
/// base's config.json (torch_dtype updated when <c>dtype</c> is set) and tokenizer files.
/// Random masks (DARE, DELLA) use a generator seeded from (seed, tensor name, model index): reruns are identical.
/// </summary>
public static class StreamingMerge
{
    public const long DefaultShardBytes = 5L * 1000 * 1000 * 1000;

    static readonly string[] CopiedFiles =
    [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
    ];

    static readonly Regex LayerIndex = new(@"(?:^|\.)layers\.(\d+)\.", RegexOptions.Compiled);

    public static MergeReport Run(MergeConfig config, string outDir, long maxShardBytes = DefaultShardBytes, Action<string>? log = null)
    {
        config.Validate();
        var paths = new List<string>();
        if (config.BaseModel is not null) paths.Add(config.BaseModel);
        foreach (var m in config.Models) if (!paths.Contains(m.Model)) paths.Add(m.Model);
        var outFull = Path.GetFullPath(outDir).TrimEnd(Path.DirectorySeparatorChar);
        foreach (var p in paths)
            if (Path.GetFullPath(p).TrimEnd(Path.DirectorySeparatorChar) == outFull)
                throw new ArgumentException($"the output directory {outDir} is also an input model; choose another --out");

        using var eager = Backend.NativeAllocator.ReturnEagerly();   // the merge's memory bound: freed tensors leave the process at once
        var readers = new Dictionary<string, CheckpointReader>(StringComparer.Ordinal);
        try
        {
            foreach (var p in paths) readers[p] = new CheckpointReader(p);
            var reference = readers[paths[0]];
            var inputs = config.Merged;
            var inputReaders = inputs.Select(m => readers[m.Model]).ToArray();
            var baseReader = config.Spec.NeedsBase ? reference : null;
            CheckCompatible(reference, readers.Values.Where(r => r != reference));

            var layers = reference.Names.Select(n => LayerIndex.Match(n)).Where(m => m.Success).Select(m => int.Parse(m.Groups[1].Value) + 1).DefaultIfEmpty(0).Max();
            var outCode = config.Dtype switch { "float32" => "F32", "float16" => "F16", "bfloat16" => "BF16", _ => null };
            var plan = reference.Names.Select(n =>
            {
                var e = reference.Entry(n);
                return new PlannedTensor(n, IsFloat(e.DType) ? outCode ?? e.DType : e.DType, e.Shape);
            }).ToArray();

            int peak = 0, open = 0;
            long peakBytes = 0, openBytes = 0;
            void Opened(Tensor t) { open++; openBytes += t.numel() * t.element_size(); peak = Math.Max(peak, open); peakBytes = Math.Max(peakBytes, openBytes); }
            void Closed(Tensor t) { open--; openBytes -= t.numel() * t.element_size(); t.Dispose(); }

            var shards = 0;
            AtomicFile.WriteDirectory(outDir, tmp =>
            {
                using var writer = new ShardedSafetensorsWriter(tmp, plan, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
                shards = writer.ShardCount;
                using var noGrad = no_grad();
                foreach (var p in plan)
                {
                    // Every tensor made for this name (inputs, the rules' temporaries, the result) is freed before the next
                    // name is read: left to the finalizer, the temporaries pile up to several models' worth of memory.
                    using var scope = NewDisposeScope();
                    var held = new List<Tensor>();
                    try
                    {
                        Tensor Hold(Tensor t) { held.Add(t); Opened(t); return t; }
                        Tensor result;
                        if (!IsFloat(reference.Entry(p.Name).DType)) result = Hold(reference.Read(p.Name));
                        else
                        {
                            var theta0 = baseReader is null ? null : Hold(baseReader.Read(p.Name));
                            var thetas = inputReaders.Select(r => Hold(r.Read(p.Name))).ToArray();
                            var merged = Hold(MergeTensor(config, p.Name, LayerPosition(p.Name, layers), theta0, thetas));
                            result = Hold(merged.to_type(Safetensors.ScalarTypeOf(p.DType)));
                        }
                        writer.Add(p.Name, result);
                    }
                    finally
                    {
                        foreach (var t in held) Closed(t);
                    }
                    // Freed blocks inside the heap (below the mmap threshold, which glibc raises by itself under RESEARCH_MALLOC=system)
                    // stay resident until trimmed; handing them back after each name keeps resident memory at one name's working set
                    // instead of the high-water mark of every name so far.
                    Backend.NativeAllocator.ReturnFreePages();
                }
                writer.Finish();
                CopyFiles(paths[0], tmp, config.Dtype);
            });
            log?.Invoke($"merged {plan.Length} tensors ({MergeConfig.MethodName(config.Method)}) into {outDir} in {shards} shard(s); at most {peak} tensors ({peakBytes} bytes) held at once");
            return new MergeReport(outDir, plan.Length, shards, peak, peakBytes);
        }
        finally
        {
            foreach (var r in readers.Values) r.Dispose();
        }
    }

    /// <summary>
    /// Merges one tensor by the config's method and parameters as resolved for <paramref name="name"/> at layer
    /// position <paramref name="layerPosition"/> in [0, 1]. <paramref name="thetas"/> follow the config's models
    /// (all of them for linear; those other than the base otherwise). The result is float32.
    /// </summary>
    public static Tensor MergeTensor(MergeConfig config, string name, double layerPosition, Tensor? theta0, IReadOnlyList<Tensor> thetas)
    {
        var spec = config.Spec;
        var models = config.Merged;
        if (models.Count != thetas.Count) throw new ArgumentException($"{models.Count} models in the config but {thetas.Count} tensors given for '{name}'");
        if (spec.NeedsBase && theta0 is null) throw new ArgumentException($"{spec.Name} needs the base tensor of '{name}'");

        double Global(string key, double? fallback) =>
            config.Parameters.TryGetValue(key, out var g) && g.Evaluate(name, layerPosition) is { } v ? v : fallback ?? double.NaN;
        double[] PerModel(string key) => models.Select(m =>
            m.Parameters.TryGetValue(key, out var s) && s.Evaluate(name, layerPosition) is { } v ? v : Global(key, MergeMethods.DefaultOf(key))).ToArray();

        var generators = new List<Generator>();
        try
        {
            IReadOnlyList<Generator> Gens()
            {
                var h = NameHash(name);
                for (var i = 0; i < models.Count; i++) generators.Add(new Generator(Rng.Derive(config.Seed, h, i)));
                return generators;
            }
            var inputs = new MergeInputs(theta0, thetas, PerModel("weight"), PerModel("density"), PerModel("gamma"), PerModel("epsilon"),
                Global("lambda", MergeMethods.DefaultOf("lambda")), Global("t", null), config.EffectiveNormalize, config.EffectiveRescale, Gens);
            return spec.Apply(inputs);
        }
        finally
        {
            foreach (var g in generators) g.Dispose();
        }
    }

    /// <summary>l/(L-1) for a tensor of layer l of L (1 when L is 1); 0 for tensors outside the layers.</summary>
    public static double LayerPosition(string name, int layers)
    {
        var m = LayerIndex.Match(name);
        if (!m.Success) return 0;
        return layers > 1 ? int.Parse(m.Groups[1].Value) / (double)(layers - 1) : 1;
    }

    /// <summary>FNV-1a of the UTF-8 name: a seed part that does not change between runs or .NET versions.</summary>
    static long NameHash(string name)
    {
        var h = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(name)) h = unchecked((h ^ b) * 1099511628211UL);
        return unchecked((long)h);
    }

    static bool IsFloat(string code) => code is "F64" or "F32" or "F16" or "BF16";

    static void CheckCompatible(CheckpointReader reference, IEnumerable<CheckpointReader> others)
    {
        foreach (var o in others)
        {
            if (Tokenizers.Exists(reference.Dir) && Tokenizers.Exists(o.Dir)
                && Tokenizers.Mismatch(Tokenizers.Load(reference.Dir), Tokenizers.Load(o.Dir)) is { } why)
                throw new InvalidDataException($"vocabularies differ between {reference.Dir} and {o.Dir}: {why}; merge models that share a tokenizer");
            foreach (var n in reference.Names)
                if (!o.Contains(n))
                    throw new InvalidDataException($"tensor '{n}' is in {reference.Dir} but missing in {o.Dir}: the models have different architectures");
            foreach (var n in o.Names)
                if (!reference.Contains(n))
                    throw new InvalidDataException($"tensor '{n}' is in {o.Dir} but missing in {reference.Dir}: the models have different architectures");
            foreach (var n in reference.Names)
            {
                var a = reference.Entry(n).Shape;
                var b = o.Entry(n).Shape;
                if (a.SequenceEqual(b)) continue;
                if ((n.Contains("embed_tokens", StringComparison.Ordinal) || n.Contains("lm_head", StringComparison.Ordinal) || n.EndsWith("wte.weight", StringComparison.Ordinal))
                    && a.Length == b.Length && a.Length > 0 && a.Skip(1).SequenceEqual(b.Skip(1)))
                    throw new InvalidDataException(
                        $"vocabularies differ: tensor '{n}' has {a[0]} rows in {reference.Dir} but {b[0]} in {o.Dir}; merge models that share a tokenizer");
                throw new InvalidDataException(
                    $"shape mismatch for tensor '{n}': [{string.Join(", ", a)}] in {reference.Dir} but [{string.Join(", ", b)}] in {o.Dir}");
            }
        }
    }

    static void CopyFiles(string from, string to, string? dtype)
    {
        foreach (var f in CopiedFiles)
        {
            var src = Path.Combine(from, f);
            if (!File.Exists(src)) continue;
            var dst = Path.Combine(to, f);
            if (f == "config.json" && dtype is not null && JsonNode.Parse(File.ReadAllText(src)) is JsonObject cfg)
            {
                cfg["torch_dtype"] = dtype;
                AtomicFile.WriteAllText(dst, cfg.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            }
            else File.Copy(src, dst, overwrite: true);
        }
    }
}
