using Research.Data;
using Research.Eval;
using Research.Models;

namespace Research.Pipelines;

/// <summary>An evaluation run on a stage's output checkpoint; its metrics are stored with the node.</summary>
public interface ISuite
{
    string Name { get; }
    /// <summary>Enters the evaluation's cache key: same suite, same node, same scores.</summary>
    string Fingerprint { get; }
    IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer);
}

/// <summary>Perplexity and bits per byte on the held-out split of a corpus (the split the stages hold out).</summary>
public sealed class PerplexitySuite(string name, DataSource source, double validationFraction, long seed, int maxLength) : ISuite
{
    public string Name => name;
    public string Fingerprint => $"perplexity|{source.Fingerprint}|{validationFraction:R}|{seed}|{maxLength}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        var docs = validationFraction > 0 ? source.Validation(validationFraction, (int)seed).Documents : source.Corpus.Documents;
        var r = Perplexity.Evaluate(model, tokenizer, docs, name, maxLength);
        return new Dictionary<string, double> { ["perplexity"] = r.Perplexity, ["bits_per_byte"] = r.BitsPerByte };
    }
}
