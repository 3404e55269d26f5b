using Research.Data;
using Research.Models;

namespace Research.Selection;

/// <summary>
/// Perplexity filtering with a small reference model (as in CCNet-style pipelines): score every document by the
/// reference model's per-token perplexity exp(−LL/tokens) (rolling windows, <see cref="Eval.Perplexity"/>) and keep
/// the <c>keep</c> share with the lowest perplexity (ties to the earlier document), in their original order.
/// </summary>
public static class PerplexityFilter
{
    public static double[] Scores(CausalLM model, ITokenizer tokenizer, IReadOnlyList<Document> documents, int maxLength) =>
        documents.Select((d, i) => Eval.Perplexity.Evaluate(model, tokenizer, [d], $"document {i} ({d.Source}:{d.Line})", maxLength).Perplexity).ToArray();

    /// <summary>Indices of the ⌈keep·n⌉ lowest scores, ascending by index.</summary>
    public static int[] Keep(IReadOnlyList<double> scores, double keep)
    {
        if (!(keep > 0 && keep <= 1)) throw new ArgumentOutOfRangeException(nameof(keep), keep, "perplexity filter: the share to keep must be in (0, 1]");
        var k = (int)Math.Ceiling(keep * scores.Count - 1e-9);
        return Enumerable.Range(0, scores.Count).OrderBy(i => scores[i]).ThenBy(i => i).Take(k).Order().ToArray();
    }

    /// <summary>The kept documents of <paramref name="corpus"/> scored by the checkpoint in <paramref name="referenceDir"/>.</summary>
    public static Corpus Filter(Corpus corpus, string referenceDir, double keep, int maxLength = 128)
    {
        var (model, tokenizer) = Checkpoint.Load(referenceDir);
        using (model)
        {
            var scores = Scores(model, tokenizer, corpus.Documents, maxLength);
            return new Corpus(corpus.Name, Keep(scores, keep).Select(i => corpus.Documents[i]).ToArray());
        }
    }
}
