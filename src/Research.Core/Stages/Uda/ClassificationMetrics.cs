namespace Research.Stages.Uda;

/// <summary>How confident a prediction is, for ATC: the top softmax probability, or the negative entropy of the softmax.</summary>
public enum ConfidenceScore
{
    MaxProbability,
    NegativeEntropy,
}

/// <summary>
/// Scores of a classifier's predictions, as pure functions of arrays: accuracy, macro-F1, expected calibration error, and
/// accuracy prediction under shift (ATC, and the plain average-confidence baseline).
/// </summary>
public static class ClassificationMetrics
{
    public static double Accuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> gold)
    {
        Same(predicted.Count, gold.Count);
        return predicted.Count == 0 ? double.NaN : predicted.Zip(gold).Count(x => x.First == x.Second) / (double)predicted.Count;
    }

    /// <summary>The unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class with no gold and no predicted example is left out (as scikit-learn's labels=present).</summary>
    public static double MacroF1(IReadOnlyList<int> predicted, IReadOnlyList<int> gold, int classes)
    {
        Same(predicted.Count, gold.Count);
        var f1s = new List<double>();
        for (var c = 0; c < classes; c++)
        {
            int tp = 0, fp = 0, fn = 0;
            for (var i = 0; i < gold.Count; i++)
            {
                if (predicted[i] == c && gold[i] == c) tp++;
                else if (predicted[i] == c) fp++;
                else if (gold[i] == c) fn++;
            }
            if (tp + fp + fn > 0) f1s.Add(2.0 * tp / (2.0 * tp + fp + fn));
        }
        return f1s.Count == 0 ? double.NaN : f1s.Average();
    }

    /// <summary>
    /// Expected calibration error with <paramref name="bins"/> equal-width bins of the top probability over (0, 1]
    /// (bin b holds ((b)/M, (b+1)/M]): Σ_b |B_b|/n · |acc(B_b) - conf(B_b)| (Guo et al. 2017; Naeini et al. 2015).
    /// </summary>
    public static double ExpectedCalibrationError(IReadOnlyList<double> confidence, IReadOnlyList<bool> correct, int bins = 15)
    {
        Same(confidence.Count, correct.Count);
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), $"ECE needs at least one bin (got {bins})");
        if (confidence.Count == 0) return double.NaN;
        var count = new int[bins];
        var conf = new double[bins];
        var hits = new double[bins];
        for (var i = 0; i < confidence.Count; i++)
        {
            var c = confidence[i];
            if (!(c is >= 0 and <= 1)) throw new ArgumentException($"ECE: confidence {i} is {c}, not a probability");
            var b = Math.Clamp((int)Math.Ceiling(c * bins) - 1, 0, bins - 1);
            count[b]++;
            conf[b] += c;
            if (correct[i]) hits[b]++;
        }
        double ece = 0;
        for (var b = 0; b < bins; b++)
            if (count[b] > 0) ece += count[b] / (double)confidence.Count * Math.Abs(hits[b] / count[b] - conf[b] / count[b]);
        return ece;
    }

    /// <summary>The score ATC thresholds for a row of probabilities: its maximum, or Σ p log p (negative entropy).</summary>
    public static double Score(IReadOnlyList<double> probs, ConfidenceScore score) => score switch
    {
        ConfidenceScore.MaxProbability => probs.Max(),
        _ => probs.Where(p => p > 0).Sum(p => p * Math.Log(p)),
    };

    /// <summary>
    /// ATC's threshold (Garg et al. 2022), fit on source validation: t such that the share of source scores below t equals
    /// the source error. With scores sorted ascending s_(1) ≤ .. ≤ s_(n) and k = round(error · n): t = (s_(k) + s_(k+1)) / 2,
    /// -∞ when k = 0 and +∞ when k = n.
    /// </summary>
    public static double AtcThreshold(IReadOnlyList<double> sourceScores, IReadOnlyList<bool> sourceCorrect)
    {
        Same(sourceScores.Count, sourceCorrect.Count);
        var n = sourceScores.Count;
        if (n == 0) throw new ArgumentException("ATC: the source validation set is empty");
        var sorted = sourceScores.Order().ToArray();
        var error = sourceCorrect.Count(c => !c) / (double)n;
        var k = (int)Math.Round(error * n, MidpointRounding.AwayFromZero);
        if (k == 0) return double.NegativeInfinity;
        if (k == n) return double.PositiveInfinity;
        return (sorted[k - 1] + sorted[k]) / 2;
    }

    /// <summary>ATC's predicted accuracy on the target: the share of target scores above the threshold.</summary>
    public static double AtcPredict(IReadOnlyList<double> targetScores, double threshold) =>
        targetScores.Count == 0 ? double.NaN : targetScores.Count(s => s > threshold) / (double)targetScores.Count;

    /// <summary>The average-confidence baseline: predicted accuracy = mean top probability.</summary>
    public static double AverageConfidence(IReadOnlyList<double> topProbability) =>
        topProbability.Count == 0 ? double.NaN : topProbability.Average();

    static void Same(int a, int b)
    {
        if (a != b) throw new ArgumentException($"predictions and gold labels differ in length ({a} vs {b})");
    }
}
