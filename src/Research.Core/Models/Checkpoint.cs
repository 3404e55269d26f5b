using Research.Data;
using Research.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// A model checkpoint as the Hugging Face ecosystem lays it out: model.safetensors (or shards with
/// model.safetensors.index.json), config.json (any family of <see cref="Families"/>) and the tokenizer's files.
/// Written atomically as a whole directory; never reads pickle. A loaded model saves back faithfully: config.json keeps
/// every key, weights keep their names, stored dtype and sharding, generation_config.json is copied as it was.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string GenerationConfigFile = "generation_config.json";
    /// <summary>Shard bound for a model saved here that was not loaded sharded (transformers' default max_shard_size).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>Writes the directory atomically; <paramref name="extra"/> may add files (optimizer and trainer state) to the same directory before it appears.</summary>
    public static void Save(string dir, CausalLM model, ITokenizer tokenizer, Action<string>? extra = null) =>
        AtomicFile.WriteDirectory(dir, tmp =>
        {
            SaveWeights(tmp, model);
            model.Config.Save(Path.Combine(tmp, ConfigFile));
            tokenizer.Save(tmp);
            var origin = Origin(model);
            if (origin is not null && !File.Exists(Path.Combine(tmp, GenerationConfigFile)) && File.Exists(Path.Combine(origin.Directory, GenerationConfigFile)))
                File.Copy(Path.Combine(origin.Directory, GenerationConfigFile), Path.Combine(tmp, GenerationConfigFile));
            extra?.Invoke(tmp);
        });

    /// <summary>The weights under their checkpoint names, in their stored dtype, sharded as they were loaded (or past 5 GB).</summary>
    public static void SaveWeights(string dir, CausalLM model)
    {
        var origin = Origin(model);
        var tensors = Weights(model).ToList();
        try
        {
            var maxShard = origin?.MaxShardBytes ?? DefaultMaxShardBytes;
            if (origin?.MaxShardBytes is null && tensors.Sum(t => t.Value.numel() * t.Value.element_size()) <= maxShard)
                Safetensors.Save(Path.Combine(dir, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            else
                Safetensors.SaveSharded(dir, tensors, maxShard);
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    /// <summary>Checkpoint-named weights (lm_head.weight omitted when tied, as HF writes it), GPT-2's Conv1D weights
    /// transposed back to [in, out], each in the dtype it was stored in (the parameter's own for a model built here).
    /// The caller disposes the tensors.</summary>
    public static IEnumerable<KeyValuePair<string, Tensor>> Weights(CausalLM model)
    {
        var origin = Origin(model);
        foreach (var (name, p) in model.named_parameters())
        {
            var key = origin is { Unprefixed: true } && name.StartsWith(model.Family.Names.Root + ".") ? name[(model.Family.Names.Root.Length + 1)..] : name;
            // Grad mode is per thread and restored on dispose: a no_grad held across the yield would be undone out of order when two
            // of these enumerations interleave (Seq.zip), leaving gradients off for the thread. So each tensor gets its own.
            Tensor result;
            using (no_grad())
            {
                using var t = IsConv(model.Family, name) ? p.t() : p.alias();
                var dtype = origin?.Dtypes.GetValueOrDefault(key) ?? p.dtype;
                using var typed = t.dtype != dtype ? t.to(dtype) : t.alias();
                result = typed.contiguous();
                if (ReferenceEquals(result, typed)) result = typed.alias();
            }
            yield return new KeyValuePair<string, Tensor>(key, result);
        }
    }

    static bool IsConv(Family f, string name) =>
        f.ConvWeights.Count > 0 && name.EndsWith(".weight") && f.ConvWeights.Contains(name.Split('.')[^2]);

    public static bool Exists(string dir) =>
        File.Exists(Path.Combine(dir, ConfigFile)) &&
        (File.Exists(Path.Combine(dir, WeightsFile)) || File.Exists(Path.Combine(dir, WeightsFile + ".index.json")));

    /// <summary>Loads config, weights (fp32/fp16/bf16 converted to the model's dtype) and tokenizer.</summary>
    public static (CausalLM Model, ITokenizer Tokenizer) Load(string dir, Device? device = null)
    {
        if (!Directory.Exists(dir)) AtomicFile.RecoverDirectory(dir);                        // a replace killed between its renames
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"{dir}: no such checkpoint directory (expected {WeightsFile} + {ConfigFile} + tokenizer files)");
        if (!File.Exists(Path.Combine(dir, Tokenizers.ConfigFile)) && !File.Exists(Path.Combine(dir, Tokenizers.JsonFile)))
            throw new TokenizerException($"{dir}: this stage needs a tokenizer, but the checkpoint has weights only (no {Tokenizers.ConfigFile} or {Tokenizers.JsonFile}); copy the model's tokenizer files into it");
        var model = LoadModel(dir, device);
        return (model, Tokenizers.Load(dir));
    }

    /// <summary>Config and weights only: what merging and id-level evaluation need (a weights-only directory loads).</summary>
    public static CausalLM LoadModel(string dir, Device? device = null)
    {
        if (!Directory.Exists(dir)) AtomicFile.RecoverDirectory(dir);                        // a replace killed between its renames
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"{dir}: no such checkpoint directory (expected {WeightsFile} + {ConfigFile})");
        var config = ModelConfig.Load(Path.Combine(dir, ConfigFile));
        var model = new CausalLM(config);
        LoadWeights(model, dir);
        if (device is not null) model.to(device);
        return model;
    }

    /// <summary>Where a loaded model came from: its directory, whether its keys lacked the root prefix (GPT-2 as OpenAI
    /// published it), each tensor's stored dtype, and its shard bound when it was sharded.</summary>
    public sealed record Provenance(string Directory, bool Unprefixed, IReadOnlyDictionary<string, ScalarType> Dtypes, long? MaxShardBytes);

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<CausalLM, Provenance> Origins = new();

    public static Provenance? Origin(CausalLM model) => Origins.TryGetValue(model, out var p) ? p : null;

    /// <summary>Copies every tensor of the checkpoint into the model, checking names and shapes strictly.</summary>
    /// <param name="fresh">Parameters the checkpoint may lack, which then keep their initial values (a classification head
    /// added to a language model); null = none.</param>
    public static void LoadWeights(CausalLM model, string dir, IReadOnlySet<string>? fresh = null)
    {
        var tensors = Safetensors.LoadDirectory(dir);
        try
        {
            var family = model.Family;
            var root = family.Names.Root + ".";
            var expected = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            // GPT-2 as OpenAI published it has no "transformer." prefix; accept either, keep what was read.
            var unprefixed = family.ConvWeights.Count > 0 && !tensors.Keys.Any(k => k.StartsWith(root)) && tensors.Count > 0;
            string Key(string name) => unprefixed && name.StartsWith(root) ? name[root.Length..] : name;
            var byKey = expected.ToDictionary(kv => Key(kv.Key), kv => kv.Key);
            bool Ignorable(string n) =>
                family.IgnorableSuffixes.Any(s => n.EndsWith(s)) || (model.Config.TieWordEmbeddings && n == "lm_head.weight");
            var unexpected = tensors.Keys.Where(k => !byKey.ContainsKey(k) && !Ignorable(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
            if (unexpected.Length > 0)
                throw new InvalidDataException($"{dir}: tensor '{unexpected[0]}' is not part of a {family.ModelType} model with this config.json" +
                    (unexpected.Length > 1 ? $" (and {unexpected.Length - 1} more)" : ""));
            var dtypes = new Dictionary<string, ScalarType>(StringComparer.Ordinal);
            using (no_grad())
            {
                foreach (var (key, name) in byKey)
                {
                    var p = expected[name];
                    if (!tensors.TryGetValue(key, out var stored))
                    {
                        if (fresh is not null && fresh.Contains(key)) { dtypes[key] = p.dtype; continue; }   // saved as it trains
                        throw new InvalidDataException($"{dir}: checkpoint lacks tensor '{key}'");
                    }
                    var conv = IsConv(family, name);
                    var shape = conv && stored.dim() == 2 ? new[] { stored.shape[1], stored.shape[0] } : stored.shape;
                    if (!shape.SequenceEqual(p.shape))
                        throw new InvalidDataException($"{dir}: tensor '{key}' has shape [{string.Join(", ", stored.shape)}], config.json implies [{string.Join(", ", conv ? [p.shape[1], p.shape[0]] : p.shape)}]");
                    dtypes[key] = stored.dtype;
                    using var source = conv ? stored.t() : stored.alias();
                    p.copy_(source.to(p.dtype));
                }
            }
            Origins.AddOrUpdate(model, new Provenance(Path.GetFullPath(dir), unprefixed, dtypes, MaxShardBytes(dir)));
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>The largest shard's size when the directory is sharded (the bound a save keeps), else null.</summary>
    static long? MaxShardBytes(string dir)
    {
        if (File.Exists(Path.Combine(dir, WeightsFile))) return null;
        var index = Path.Combine(dir, Safetensors.IndexFileName);
        if (!File.Exists(index)) return null;
        return Safetensors.ReadIndex(index).Values.Distinct().Select(f => new FileInfo(Path.Combine(dir, f)).Length).DefaultIfEmpty(DefaultMaxShardBytes).Max();
    }
}
