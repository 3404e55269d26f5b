using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Eval;

/// <summary>
/// Corpus-level scores, as lm-evaluation-harness computes them: totals first, then the ratio. <see cref="Documents"/>
/// holds each document's log-likelihood and token count, for the bootstrap interval over documents.
/// </summary>
public sealed record PerplexityResult(string Corpus, double LogLikelihood, long Tokens, long Bytes, long Words)
{
    public IReadOnlyList<(double LogLikelihood, long Tokens)> Documents { get; init; } = [];

    /// <summary>Resamples drawn for <see cref="PerplexityInterval"/>, from a fixed seed (so the interval is reproducible).</summary>
    public const int BootstrapResamples = 1000;

    /// <summary>
    /// The corpus perplexity's 95% percentile-bootstrap interval over documents: each resample draws the documents with
    /// replacement and takes exp(-sum LL / sum tokens) of them. No interval for one document.
    /// </summary>
    public Interval PerplexityInterval()
    {
        var docs = Documents;
        return Statistics.Bootstrap(docs.Count, Perplexity, idx =>
        {
            double ll = 0; long tokens = 0;
            foreach (var i in idx) { ll += docs[i].LogLikelihood; tokens += docs[i].Tokens; }
            return Math.Exp(-ll / tokens);
        }, seed: 0, BootstrapResamples);
    }

    /// <summary>exp(-LL / tokens): per-token perplexity (depends on the tokenizer).</summary>
    public double Perplexity => Math.Exp(-LogLikelihood / Tokens);
    /// <summary>-LL / (bytes ln 2): comparable across tokenizers.</summary>
    public double BitsPerByte => -LogLikelihood / (Bytes * Math.Log(2));
    public double BytePerplexity => Math.Exp(-LogLikelihood / Bytes);
    public double WordPerplexity => Math.Exp(-LogLikelihood / Words);

    /// <summary>Perplexity, bits per byte and, over two or more documents, the perplexity's bootstrap bounds.</summary>
    public IReadOnlyDictionary<string, double> ToMetrics(string prefix)
    {
        var m = new Dictionary<string, double> { [$"{prefix}perplexity"] = Perplexity, [$"{prefix}bits_per_byte"] = BitsPerByte };
        if (PerplexityInterval() is { HasInterval: true } ci)
        {
            m[$"{prefix}perplexity_lower"] = ci.Lower;
            m[$"{prefix}perplexity_upper"] = ci.Upper;
        }
        return m;
    }
}

/// <summary>
/// Rolling log-likelihood of whole documents: each document is prefixed with EOS and cut into disjoint
/// windows of the model's context; every token is scored exactly once. Sums in float64, so the result
/// does not depend on the batch size beyond float rounding of the forward pass.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Evaluate(CausalLM model, ITokenizer tokenizer, IReadOnlyList<Document> documents, string name, int maxLength, int batchSize = 8)
    {
        if (documents.Count == 0) throw new ArgumentException($"perplexity: corpus '{name}' has no documents");
        var windows = new List<(long[] Input, long[] Target, int Doc)>();
        var docTokens = new long[documents.Count];
        long tokens = 0, bytes = 0, words = 0;
        for (var d = 0; d < documents.Count; d++)
        {
            var doc = documents[d];
            var ids = tokenizer.Encode(doc.Text);
            docTokens[d] = ids.Length;
            bytes += System.Text.Encoding.UTF8.GetByteCount(doc.Text);
            words += doc.Text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            tokens += ids.Length;
            var seq = new long[ids.Length + 1];
            seq[0] = tokenizer.EosId;
            for (int i = 0; i < ids.Length; i++) seq[i + 1] = ids[i];
            for (int start = 0; start < ids.Length; start += maxLength)
            {
                var len = Math.Min(maxLength, ids.Length - start);
                windows.Add((seq[start..(start + len)], seq[(start + 1)..(start + 1 + len)], d));
            }
        }
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        double ll = 0;
        var docLl = new double[documents.Count];
        using (no_grad())
        {
            foreach (var chunk in windows.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                var width = chunk.Max(w => w.Input.Length);
                var input = new long[chunk.Length * width];
                var target = new long[chunk.Length * width];
                Array.Fill(input, tokenizer.PadId);
                Array.Fill(target, TokenLoss.IgnoreIndex);
                for (int i = 0; i < chunk.Length; i++)
                {
                    chunk[i].Input.CopyTo(input, i * width);
                    chunk[i].Target.CopyTo(target, i * width);
                }
                var logits = model.Forward(tensor(input, dtype: int64, device: device).view(chunk.Length, width));
                var targets = tensor(target, dtype: int64, device: device).view(chunk.Length, width);
                ll -= TokenLoss.SummedCrossEntropy(logits, targets).to(float64).item<double>();
                // Per window, for the interval over documents (the corpus total above is summed as before).
                var rows = TokenLoss.RowCrossEntropy(logits, targets).to(float64).cpu().data<double>().ToArray();
                for (int i = 0; i < chunk.Length; i++) docLl[chunk[i].Doc] -= rows[i];
            }
        }
        if (wasTraining) model.train();
        return new PerplexityResult(name, ll, tokens, bytes, words)
        {
            Documents = docLl.Zip(docTokens, (l, t) => (l, t)).Where(x => x.t > 0).ToArray(),
        };
    }
}
