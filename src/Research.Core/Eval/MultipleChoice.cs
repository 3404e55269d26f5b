using Research.Data;
using Research.Models;
using static TorchSharp.torch;

namespace Research.Eval;

/// <summary>How one item was scored: the log-likelihood of every choice and both decisions.</summary>
public sealed record McPrediction(McItem Item, string Context, IReadOnlyList<double> LogLikelihoods, int Predicted, int PredictedNorm)
{
    public bool Correct => Predicted == Item.Answer;
    public bool CorrectNorm => PredictedNorm == Item.Answer;
}

/// <summary>Accuracy (argmax LL) and length-normalized accuracy (argmax LL / characters) over <see cref="Count"/> items.</summary>
public sealed record McResult(double Acc, double AccNorm, int Count, IReadOnlyList<McPrediction> Predictions)
{
    /// <summary>acc, acc_norm and their per-item standard errors (as lm-evaluation-harness reports them), and the count.</summary>
    public IReadOnlyDictionary<string, double> ToMetrics()
    {
        var m = new Dictionary<string, double> { ["acc"] = Acc, ["acc_norm"] = AccNorm, ["count"] = Count };
        if (Predictions.Count > 1)
        {
            m["acc_stderr"] = Statistics.StandardError(Predictions.Select(p => p.Correct ? 1.0 : 0.0).ToArray());
            m["acc_norm_stderr"] = Statistics.StandardError(Predictions.Select(p => p.CorrectNorm ? 1.0 : 0.0).ToArray());
        }
        return m;
    }
}

/// <summary>
/// Prompts as lm-evaluation-harness builds them for a multiple-choice task:
/// <c>fewshot_1 + "\n\n" + ... + fewshot_k + "\n\n" + Render(item)</c>, where a few-shot example is
/// <c>Render(example) + " " + gold choice</c> and each choice is scored as the continuation <c>" " + choice</c>.
/// The default template is <c>"Question: {question}\nAnswer:"</c>.
/// </summary>
public static class McPrompt
{
    public const string DefaultTemplate = "Question: {question}\nAnswer:";
    public const string FewShotDelimiter = "\n\n";
    public const string TargetDelimiter = " ";

    public static string Render(McItem item, string template = DefaultTemplate) => template.Replace("{question}", item.Question);

    public static string Continuation(string choice) => TargetDelimiter + choice;

    /// <summary>
    /// The k few-shot examples for the item at <paramref name="index"/>: drawn without replacement from
    /// <paramref name="pool"/> by <c>Rng(Derive(seed, index))</c>, skipping any example with the item's content.
    /// </summary>
    public static IReadOnlyList<McItem> FewShot(McItem item, int index, IReadOnlyList<McItem> pool, int k, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (k == 0) return [];
        var rng = new Rng(Rng.Derive(seed, index));
        var picked = new List<McItem>(k);
        // partial Fisher–Yates over pool indices, with the swaps kept sparse: O(k + skipped), not O(pool)
        var swaps = new Dictionary<int, int>();
        var n = pool.Count;
        for (var j = 0; j < n && picked.Count < k; j++)
        {
            var r = j + rng.NextInt(n - j);
            var vj = swaps.GetValueOrDefault(j, j);
            var vr = swaps.GetValueOrDefault(r, r);
            swaps[r] = vj;
            var candidate = pool[vr];
            if (!candidate.SameContent(item)) picked.Add(candidate);
        }
        if (picked.Count < k)
            throw new ArgumentException($"{item.Where}: asked for {k} few-shot examples but the few-shot source has only {picked.Count} other than this item");
        return picked;
    }

    /// <summary>The full context for an item: few-shot examples, then the item's question.</summary>
    public static string Context(McItem item, IReadOnlyList<McItem> fewShot, string template = DefaultTemplate)
    {
        var parts = fewShot.Select(e => Render(e, template) + TargetDelimiter + e.Choices[e.Answer]).Append(Render(item, template));
        return string.Join(FewShotDelimiter, parts);
    }
}

/// <summary>Scoring options; the batch size never changes the scores (see <see cref="McScoring.LogLikelihoods"/>).</summary>
public sealed record McOptions
{
    public int FewShot { get; init; }
    public long Seed { get; init; } = 1234;
    public int BatchSize { get; init; } = 8;
    public string Template { get; init; } = McPrompt.DefaultTemplate;
}

public static class McScoring
{
    /// <summary>
    /// The two harness decisions on given log-likelihoods: acc picks argmax LL_i, acc_norm picks
    /// argmax LL_i / length_i (length of the continuation in characters). Ties go to the first index.
    /// </summary>
    public static (int Acc, int AccNorm) Pick(IReadOnlyList<double> logLikelihoods, IReadOnlyList<int> lengths)
    {
        if (logLikelihoods.Count == 0 || logLikelihoods.Count != lengths.Count)
            throw new ArgumentException($"Pick: {logLikelihoods.Count} log-likelihoods for {lengths.Count} lengths");
        int best = 0, bestNorm = 0;
        for (var i = 1; i < logLikelihoods.Count; i++)
        {
            if (logLikelihoods[i] > logLikelihoods[best]) best = i;
            if (logLikelihoods[i] / lengths[i] > logLikelihoods[bestNorm] / lengths[bestNorm]) bestNorm = i;
        }
        return (best, bestNorm);
    }

    /// <summary>
    /// Token ids of a (context, continuation) pair as the harness splits them: trailing spaces of the context
    /// move to the continuation, the pair is encoded whole, and the continuation is what follows the context's
    /// tokens (so merges across the boundary are scored as the model would see them). An empty context is EOS.
    /// </summary>
    public static (int[] Context, int[] Continuation) EncodePair(ITokenizer tokenizer, string context, string continuation)
    {
        if (context.Length == 0) return ([tokenizer.EosId], tokenizer.Encode(continuation));
        var spaces = context.Length - context.TrimEnd(' ').Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var whole = tokenizer.Encode(context + continuation);
        var ctx = tokenizer.Encode(context);
        if (ctx.Length == 0) return ([tokenizer.EosId], whole);
        if (ctx.Length <= whole.Length && whole.AsSpan(0, ctx.Length).SequenceEqual(ctx))
            return (ctx, whole[ctx.Length..]);
        return (ctx, tokenizer.Encode(continuation));
    }

    /// <summary>
    /// log P(continuation | context) for every pair, summed over the continuation's tokens only.
    /// Each row is context + continuation without its last token, cut from the left to the model's
    /// maximum length; rows are right-padded in batches. The model is causal, so the pad tokens after a row
    /// cannot change the logits of its real positions, and each row is scored on its own positions, in float64:
    /// the scores do not depend on the batch size beyond float rounding of the forward pass.
    /// </summary>
    public static double[] LogLikelihoods(CausalLM model, ITokenizer tokenizer, IReadOnlyList<(string Context, string Continuation)> pairs, int batchSize = 8)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var maxLength = model.Config.MaxPositionEmbeddings;
        var rows = new (long[] Input, int[] Continuation)[pairs.Count];
        for (var p = 0; p < pairs.Count; p++)
        {
            var (ctx, cont) = EncodePair(tokenizer, pairs[p].Context, pairs[p].Continuation);
            if (cont.Length == 0) throw new ArgumentException($"multiple choice: continuation {pairs[p].Continuation} encodes to no tokens");
            if (cont.Length > maxLength)
                throw new ArgumentException($"multiple choice: continuation of {cont.Length} tokens exceeds the model's maximum length {maxLength}");
            var all = ctx.Concat(cont).ToArray();
            var start = Math.Max(0, all.Length - (maxLength + 1));     // cut the context from the left
            rows[p] = (all[start..^1].Select(t => (long)t).ToArray(), cont);
        }
        var result = new double[pairs.Count];
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            // longest first, so a batch pads little; the order changes nothing else
            var order = Enumerable.Range(0, rows.Length).OrderByDescending(i => rows[i].Input.Length).ThenBy(i => i).ToArray();
            foreach (var chunk in order.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                var width = chunk.Max(i => rows[i].Input.Length);
                var input = new long[chunk.Length * width];
                Array.Fill(input, (long)tokenizer.PadId);
                for (var r = 0; r < chunk.Length; r++) rows[chunk[r]].Input.CopyTo(input, r * width);
                var logits = model.Forward(tensor(input, dtype: int64, device: device).view(chunk.Length, width)); // (B, W, V)
                for (var r = 0; r < chunk.Length; r++)
                {
                    var (row, cont) = rows[chunk[r]];
                    var n = cont.Length;
                    // the last n positions of the row predict the n continuation tokens
                    var lp = logits[r].narrow(0, row.Length - n, n).to(float64).log_softmax(-1);       // (n, V)
                    var target = tensor(cont.Select(t => (long)t).ToArray(), dtype: int64, device: device).unsqueeze(1);
                    result[chunk[r]] = lp.gather(1, target).sum().item<double>();
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return result;
    }

    /// <summary>
    /// Scores every item: builds its context (few-shot examples from <paramref name="fewShotPool"/>, or from
    /// the items themselves when null, never the item itself), scores each choice as " " + choice, and counts
    /// acc and acc_norm.
    /// </summary>
    public static McResult Evaluate(CausalLM model, ITokenizer tokenizer, IReadOnlyList<McItem> items, McOptions? options = null, IReadOnlyList<McItem>? fewShotPool = null)
    {
        options ??= new McOptions();
        if (items.Count == 0) throw new ArgumentException("multiple choice: no items to score");
        var pool = fewShotPool ?? items;
        var contexts = new string[items.Count];
        var pairs = new List<(string, string)>();
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            contexts[i] = McPrompt.Context(item, McPrompt.FewShot(item, i, pool, options.FewShot, options.Seed), options.Template);
            foreach (var c in item.Choices) pairs.Add((contexts[i], McPrompt.Continuation(c)));
        }
        var lls = LogLikelihoods(model, tokenizer, pairs, options.BatchSize);
        var predictions = new List<McPrediction>(items.Count);
        var at = 0;
        int correct = 0, correctNorm = 0;
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            var ll = lls[at..(at + item.Choices.Count)];
            at += item.Choices.Count;
            var (acc, accNorm) = Pick(ll, item.Choices.Select(c => McPrompt.Continuation(c).Length).ToArray());
            var p = new McPrediction(item, contexts[i], ll, acc, accNorm);
            if (p.Correct) correct++;
            if (p.CorrectNorm) correctNorm++;
            predictions.Add(p);
        }
        return new McResult((double)correct / items.Count, (double)correctNorm / items.Count, items.Count, predictions);
    }
}
