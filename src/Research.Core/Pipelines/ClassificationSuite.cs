using Research.Data;
using Research.Models;
using Research.Stages.Uda;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Pipelines;

/// <summary>
/// Evaluation of a classifier on the examples of one domain of a JSONL file: accuracy, macro_f1, ece (with ece_bins
/// equal-width bins) and count. With a source domain, also accuracy prediction under shift, fit on the source examples of
/// the same file (its source validation): ATC's predicted accuracy (atc_accuracy) and its absolute error against the true
/// accuracy (atc_error), the average-confidence baseline (avg_conf_accuracy, avg_conf_error), and source_accuracy.
/// With <c>tentSteps</c> &gt; 0, TENT in its episodic setting: every batch starts from the evaluated weights, takes that many
/// SGD steps of entropy minimisation on the normalisation weights, then is predicted; the weights are restored at the end.
/// </summary>
public sealed class ClassificationSuite(string name, string path, string domain, string? sourceDomain = null, int bins = 15,
    int maxLength = 128, int batchSize = 32, int tentSteps = 0, double tentLr = 1e-3, ConfidenceScore score = ConfidenceScore.NegativeEntropy) : ISuite
{
    readonly string _hash = File.Exists(path) ? ClassificationData.FileFingerprint(path)
        : throw new CorpusException($"{path}: classification data not found (expected a .jsonl file of {{\"text\", \"label\", \"domain\"}} objects)");

    public string Name => name;
    public string Fingerprint => $"classification|{_hash}|{domain}|{sourceDomain}|bins={bins}|max={maxLength}|tent={tentSteps},{tentLr:R}|score={score}";

    /// <summary>Per example: the predicted class, the top probability, the ATC score and whether the prediction is right.</summary>
    public sealed record Predictions(int[] Predicted, int[] Gold, double[] Top, double[] Scores)
    {
        public bool[] Correct => Predicted.Zip(Gold).Select(x => x.First == x.Second).ToArray();
    }

    /// <summary>The scores; none (an empty result) for a model without a classification head, such as the language model a
    /// pipeline starts from, so the suite can be evaluated after every stage.</summary>
    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        if (model.Config.NumLabels is null) return new Dictionary<string, double>();
        var all = ClassificationData.Read(path);
        var labels = SequenceClassification.Labels(model.Config);
        var target = Predict(model, tokenizer, ClassificationData.Of(all, domain, path), labels, tentSteps);
        var correct = target.Correct;
        var accuracy = ClassificationMetrics.Accuracy(target.Predicted, target.Gold);
        var result = new Dictionary<string, double>
        {
            ["accuracy"] = accuracy,
            ["macro_f1"] = ClassificationMetrics.MacroF1(target.Predicted, target.Gold, labels.Count),
            ["ece"] = ClassificationMetrics.ExpectedCalibrationError(target.Top, correct, bins),
            ["ece_bins"] = bins,
            ["count"] = target.Predicted.Length,
        };
        if (sourceDomain is not null && tentSteps == 0)
        {
            var source = Predict(model, tokenizer, ClassificationData.Of(all, sourceDomain, path), labels, 0);
            var threshold = ClassificationMetrics.AtcThreshold(source.Scores, source.Correct);
            var atc = ClassificationMetrics.AtcPredict(target.Scores, threshold);
            var ac = ClassificationMetrics.AverageConfidence(target.Top);
            result["source_accuracy"] = ClassificationMetrics.Accuracy(source.Predicted, source.Gold);
            result["atc_accuracy"] = atc;
            result["atc_error"] = Math.Abs(atc - accuracy);
            result["avg_conf_accuracy"] = ac;
            result["avg_conf_error"] = Math.Abs(ac - accuracy);
        }
        return result;
    }

    Predictions Predict(CausalLM model, ITokenizer tokenizer, IReadOnlyList<LabeledText> examples, IReadOnlyList<string> labels, int adaptSteps)
    {
        var gold = ClassificationData.Indices(examples, labels).Select(i => (int)i).ToArray();
        var pad = model.Config.PadTokenId ?? tokenizer.PadId;
        var length = Math.Min(maxLength, model.Config.MaxPositionEmbeddings);
        var rows = examples.Select(x => ClassifyBatch.Encode(tokenizer, x.Text, length, out _)).ToArray();
        var predicted = new int[rows.Length];
        var top = new double[rows.Length];
        var scores = new double[rows.Length];
        var device = model.EmbeddingWeight.device;
        var norms = adaptSteps > 0 ? ClassifyStage.NormParameters(model).ToArray() : [];
        var saved = norms.Select(p => p.detach().clone()).ToArray();
        var frozen = adaptSteps > 0 ? ClassifyStage.FreezeAllButNorms(model) : [];
        try
        {
            for (var start = 0; start < rows.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var ids = ClassifyBatch.Collate(rows[start..Math.Min(rows.Length, start + batchSize)], pad, device);
                if (adaptSteps > 0) Adapt(model, ids, norms, saved, adaptSteps);
                float[] probs;
                using (no_grad())
                    probs = SequenceClassification.Logits(model, SequenceClassification.Features(model, ids)).to(float32).softmax(-1).cpu().data<float>().ToArray();
                var k = labels.Count;
                for (var r = 0; r < ids.shape[0]; r++)
                {
                    var row = probs.AsSpan(r * k, k).ToArray().Select(p => (double)p).ToArray();
                    var best = Array.IndexOf(row, row.Max());
                    predicted[start + r] = best;
                    top[start + r] = row[best];
                    scores[start + r] = ClassificationMetrics.Score(row, score);
                }
            }
        }
        finally
        {
            using (no_grad()) for (var i = 0; i < norms.Length; i++) norms[i].copy_(saved[i]);
            foreach (var p in frozen) p.requires_grad = true;
            foreach (var s in saved) s.Dispose();
        }
        return new Predictions(predicted, gold, top, scores);
    }

    /// <summary>Episodic TENT on one batch: back to the evaluated weights, then SGD steps on the mean entropy (normalisation weights only).</summary>
    void Adapt(CausalLM model, Tensor ids, TorchSharp.Modules.Parameter[] norms, Tensor[] saved, int steps)
    {
        using (no_grad()) for (var i = 0; i < norms.Length; i++) norms[i].copy_(saved[i]);
        for (var s = 0; s < steps; s++)
        {
            using var scope = NewDisposeScope();
            var logits = SequenceClassification.Logits(model, SequenceClassification.Features(model, ids)).to(float32);
            var grads = torch.autograd.grad([UdaLosses.Entropy(logits).mean()], norms);
            using (no_grad()) for (var i = 0; i < norms.Length; i++) norms[i].sub_(grads[i] * tentLr);
        }
    }
}
