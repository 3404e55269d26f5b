using Research.Data;
using Research.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// A model checkpoint as the Hugging Face ecosystem lays it out: model.safetensors (or shards with
/// model.safetensors.index.json), config.json (model_type llama) and the tokenizer's files.
/// Written atomically as a whole directory; never reads pickle.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";

    /// <summary>Writes the directory atomically; <paramref name="extra"/> may add files (optimizer and trainer state) to the same directory before it appears.</summary>
    public static void Save(string dir, CausalLM model, ITokenizer tokenizer, Action<string>? extra = null) =>
        AtomicFile.WriteDirectory(dir, tmp =>
        {
            Safetensors.Save(Path.Combine(tmp, WeightsFile), Weights(model), new Dictionary<string, string> { ["format"] = "pt" });
            model.Config.Save(Path.Combine(tmp, ConfigFile));
            tokenizer.Save(tmp);
            extra?.Invoke(tmp);
        });

    /// <summary>HF-named weights; lm_head.weight omitted when tied (as HF writes it).</summary>
    public static IEnumerable<KeyValuePair<string, Tensor>> Weights(CausalLM model) =>
        model.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter));

    public static bool Exists(string dir) =>
        File.Exists(Path.Combine(dir, ConfigFile)) &&
        (File.Exists(Path.Combine(dir, WeightsFile)) || File.Exists(Path.Combine(dir, WeightsFile + ".index.json")));

    /// <summary>Loads config, weights (fp32/fp16/bf16 converted to the model's dtype) and tokenizer.</summary>
    public static (CausalLM Model, ITokenizer Tokenizer) Load(string dir, Device? device = null)
    {
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"{dir}: no such checkpoint directory (expected {WeightsFile} + {ConfigFile} + tokenizer files)");
        var config = ModelConfig.Load(Path.Combine(dir, ConfigFile));
        var model = new CausalLM(config);
        LoadWeights(model, dir);
        if (device is not null) model.to(device);
        return (model, Tokenizers.Load(dir));
    }

    /// <summary>Copies every tensor of the checkpoint into the model, checking names and shapes strictly.</summary>
    public static void LoadWeights(CausalLM model, string dir)
    {
        var tensors = Safetensors.LoadDirectory(dir);
        try
        {
            var expected = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            // Weights HF may store that this model derives: rotary tables, and lm_head of a tied model.
            var ignorable = new Func<string, bool>(n => n.EndsWith("rotary_emb.inv_freq") || (model.Config.TieWordEmbeddings && n == "lm_head.weight"));
            var unexpected = tensors.Keys.Where(k => !expected.ContainsKey(k) && !ignorable(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
            if (unexpected.Length > 0)
                throw new InvalidDataException($"{dir}: tensor '{unexpected[0]}' is not part of a llama model with this config.json" +
                    (unexpected.Length > 1 ? $" (and {unexpected.Length - 1} more)" : ""));
            using var noGrad = no_grad();
            foreach (var (name, p) in expected)
            {
                if (!tensors.TryGetValue(name, out var t))
                    throw new InvalidDataException($"{dir}: checkpoint lacks tensor '{name}'");
                if (!t.shape.SequenceEqual(p.shape))
                    throw new InvalidDataException($"{dir}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], config.json implies [{string.Join(", ", p.shape)}]");
                p.copy_(t.to(p.dtype));
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }
}
