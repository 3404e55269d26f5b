using Research.Data;

namespace Research.Eval;

/// <summary>
/// A mean with its interval: <see cref="Method"/> says how it was made ("t" for Student's t over seeds, "bootstrap",
/// "normal" for a standard error), and a single value has no interval (<see cref="Lower"/>/<see cref="Upper"/> NaN).
/// </summary>
public sealed record Interval(double Mean, double Lower, double Upper, int N, double Level, string Method)
{
    public bool HasInterval => N > 1 && double.IsFinite(Lower) && double.IsFinite(Upper);
    public double HalfWidth => HasInterval ? (Upper - Lower) / 2 : double.NaN;

    /// <summary>How a caption says it: "mean ± 95% t interval over 5 seeds", or "1 seed, no interval".</summary>
    public string Describe(string unit = "seed") =>
        N <= 1 ? $"{N} {unit}, no interval" : $"mean and {Level * 100:0.#}% {Method} interval over {N} {unit}s";
}

/// <summary>A paired comparison of two arms over the same seeds (a - b): the mean difference, its t interval, and three p-values.</summary>
public sealed record PairedTest(int N, double MeanDifference, Interval Difference, double T, double TP, double WilcoxonP, double SignP)
{
    /// <summary>Both tests agree the direction is a &gt; b at level <paramref name="alpha"/> (two-sided p below it, positive mean).</summary>
    public bool Greater(double alpha = 0.05) => MeanDifference > 0 && TP < alpha && WilcoxonP < alpha;
}

/// <summary>
/// The statistics results are reported with: Student's t intervals over seeds (small n), paired t, Wilcoxon signed-rank
/// and sign tests between two arms (exact for the sample sizes seeds give), percentile bootstrap intervals, and the
/// standard error of a mean (what lm-evaluation-harness reports per metric). Pure functions; every test of them is
/// against hand-computed values.
/// </summary>
public static class Statistics
{
    public static double Mean(IReadOnlyList<double> xs) => xs.Count == 0 ? double.NaN : xs.Sum() / xs.Count;

    /// <summary>Sample variance (divisor n - 1); NaN for fewer than two values.</summary>
    public static double Variance(IReadOnlyList<double> xs)
    {
        if (xs.Count < 2) return double.NaN;
        var m = Mean(xs);
        return xs.Sum(x => (x - m) * (x - m)) / (xs.Count - 1);
    }

    /// <summary>The standard error of the mean, s / sqrt(n): for 0/1 scores, sqrt(p (1 - p) / (n - 1)).</summary>
    public static double StandardError(IReadOnlyList<double> xs) => Math.Sqrt(Variance(xs) / xs.Count);

    /// <summary>Mean with a Student-t interval at <paramref name="level"/>; one value gives the value and no interval.</summary>
    public static Interval TInterval(IReadOnlyList<double> xs, double level = 0.95)
    {
        CheckFinite(xs, nameof(xs));
        if (xs.Count == 0) throw new ArgumentException("an interval needs at least one value", nameof(xs));
        var m = Mean(xs);
        if (xs.Count == 1) return new Interval(m, double.NaN, double.NaN, 1, level, "t");
        var half = StudentQuantile(1 - (1 - level) / 2, xs.Count - 1) * StandardError(xs);
        return new Interval(m, m - half, m + half, xs.Count, level, "t");
    }

    /// <summary>
    /// Percentile bootstrap of the mean: <paramref name="resamples"/> resamples with replacement drawn from
    /// <see cref="Rng"/> seeded by <paramref name="seed"/>, the interval between the (1-level)/2 and (1+level)/2 quantiles.
    /// </summary>
    public static Interval Bootstrap(IReadOnlyList<double> xs, long seed, int resamples = 1000, double level = 0.95)
    {
        CheckFinite(xs, nameof(xs));
        return Bootstrap(xs.Count, Mean(xs), idx => { var sum = 0.0; foreach (var i in idx) sum += xs[i]; return sum / idx.Length; }, seed, resamples, level);
    }

    /// <summary>
    /// Percentile bootstrap of any statistic of n units (documents, items): each resample draws n unit indices with
    /// replacement and <paramref name="statistic"/> computes the statistic of those units (a corpus perplexity is a
    /// ratio of sums, not a mean); <paramref name="estimate"/> is the statistic of the sample itself.
    /// </summary>
    public static Interval Bootstrap(int n, double estimate, Func<int[], double> statistic, long seed, int resamples = 1000, double level = 0.95)
    {
        if (n <= 0) throw new ArgumentException("a bootstrap needs at least one value", nameof(n));
        if (resamples < 2) throw new ArgumentOutOfRangeException(nameof(resamples), resamples, "a bootstrap needs at least 2 resamples");
        if (n == 1) return new Interval(estimate, double.NaN, double.NaN, 1, level, "bootstrap");
        var rng = new Rng(seed);
        var values = new double[resamples];
        var idx = new int[n];
        for (var b = 0; b < resamples; b++)
        {
            for (var i = 0; i < n; i++) idx[i] = rng.NextInt(n);
            values[b] = statistic(idx);
        }
        Array.Sort(values);
        return new Interval(estimate, Quantile(values, (1 - level) / 2), Quantile(values, (1 + level) / 2), n, level, "bootstrap");
    }

    /// <summary>The q-quantile of sorted values, linearly interpolated between order statistics (numpy's default).</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) throw new ArgumentException("no values", nameof(sorted));
        var h = (sorted.Count - 1) * Math.Clamp(q, 0, 1);
        var lo = (int)Math.Floor(h);
        var hi = Math.Min(sorted.Count - 1, lo + 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Paired comparison of a and b (same seeds, same order): a - b, with paired t, Wilcoxon signed-rank and sign tests.</summary>
    public static PairedTest Paired(IReadOnlyList<double> a, IReadOnlyList<double> b, double level = 0.95)
    {
        if (a.Count != b.Count) throw new ArgumentException($"a paired test needs the same seeds in both arms; got {a.Count} and {b.Count} values");
        CheckFinite(a, nameof(a));
        CheckFinite(b, nameof(b));
        var d = a.Zip(b, (x, y) => x - y).ToArray();
        var ci = TInterval(d, level);
        double t = double.NaN, tp = double.NaN;
        if (d.Length > 1)
        {
            var se = StandardError(d);
            t = se > 0 ? ci.Mean / se : ci.Mean == 0 ? 0 : Math.Sign(ci.Mean) * double.PositiveInfinity;
            tp = se > 0 ? StudentTwoSidedP(t, d.Length - 1) : ci.Mean == 0 ? 1 : 0;
        }
        return new PairedTest(d.Length, ci.Mean, ci, t, tp, WilcoxonSignedRankP(d), SignTestP(d));
    }

    /// <summary>
    /// Two-sided exact p of the Wilcoxon signed-rank test on differences (zeros dropped, tied |d| get their average
    /// rank): the distribution of W+ over all 2^n sign assignments, counted on doubled ranks so ties stay exact.
    /// 1 when every difference is 0.
    /// </summary>
    public static double WilcoxonSignedRankP(IReadOnlyList<double> differences)
    {
        var d = differences.Where(x => x != 0).ToArray();
        var n = d.Length;
        if (n == 0) return 1;
        if (n > 60) throw new ArgumentException($"the exact signed-rank test is for small samples (seeds); got {n} differences");
        var order = Enumerable.Range(0, n).OrderBy(i => Math.Abs(d[i])).ToArray();
        var doubled = new int[n];                              // 2 x average rank: an integer even with ties
        for (var i = 0; i < n;)
        {
            var j = i;
            while (j + 1 < n && Math.Abs(d[order[j + 1]]) == Math.Abs(d[order[i]])) j++;
            for (var k = i; k <= j; k++) doubled[order[k]] = i + 1 + j + 1;
            i = j + 1;
        }
        var total = doubled.Sum();
        var counts = new double[total + 1];
        counts[0] = 1;
        foreach (var r in doubled)
            for (var w = total; w >= r; w--) counts[w] += counts[w - r];
        var observed = Enumerable.Range(0, n).Where(i => d[i] > 0).Sum(i => doubled[i]);
        var all = Math.Pow(2, n);
        var below = counts.Take(observed + 1).Sum() / all;
        var above = counts.Skip(observed).Sum() / all;
        return Math.Min(1, 2 * Math.Min(below, above));
    }

    /// <summary>Two-sided exact sign test: the number of positive differences against Binomial(n, 1/2), zeros dropped.</summary>
    public static double SignTestP(IReadOnlyList<double> differences)
    {
        var n = differences.Count(x => x != 0);
        if (n == 0) return 1;
        var k = Math.Min(differences.Count(x => x > 0), differences.Count(x => x < 0));
        var tail = 0.0;
        for (var i = 0; i <= k; i++) tail += Math.Exp(LogChoose(n, i) - n * Math.Log(2));
        return Math.Min(1, 2 * tail);
    }

    /// <summary>P(|T| &gt;= |t|) for Student's t with <paramref name="df"/> degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2).</summary>
    public static double StudentTwoSidedP(double t, double df)
    {
        if (double.IsNaN(t)) return double.NaN;
        if (double.IsInfinity(t)) return 0;
        return RegularizedBeta(df / (df + t * t), df / 2, 0.5);
    }

    /// <summary>The p-quantile of Student's t (p in (0, 1)), by bisection on the two-sided tail.</summary>
    public static double StudentQuantile(double p, double df)
    {
        if (!(p > 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "a quantile needs p in (0, 1)");
        if (p == 0.5) return 0;
        var tail = 2 * Math.Min(p, 1 - p);                     // two-sided tail mass beyond |t|
        double lo = 0, hi = 1;
        while (StudentTwoSidedP(hi, df) > tail) hi *= 2;
        for (var i = 0; i < 200 && hi - lo > 1e-12 * Math.Max(1, hi); i++)
        {
            var mid = (lo + hi) / 2;
            if (StudentTwoSidedP(mid, df) > tail) lo = mid; else hi = mid;
        }
        var q = (lo + hi) / 2;
        return p > 0.5 ? q : -q;
    }

    /// <summary>The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz).</summary>
    public static double RegularizedBeta(double x, double a, double b)
    {
        if (x <= 0) return 0;
        if (x >= 1) return 1;
        // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
        if (x > (a + 1) / (a + b + 2)) return 1 - RegularizedBeta(1 - x, b, a);
        var front = Math.Exp(LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * Math.Log(x) + b * Math.Log(1 - x));
        const double tiny = 1e-300;
        double c = 1, dd = 1 - (a + b) * x / (a + 1);
        dd = 1 / (Math.Abs(dd) < tiny ? tiny : dd);
        var f = dd;
        for (var m = 1; m <= 500; m++)
        {
            var even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            dd = 1 + even * dd; dd = 1 / (Math.Abs(dd) < tiny ? tiny : dd);
            c = 1 + even / c; if (Math.Abs(c) < tiny) c = tiny;
            f *= dd * c;
            var odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
            dd = 1 + odd * dd; dd = 1 / (Math.Abs(dd) < tiny ? tiny : dd);
            c = 1 + odd / c; if (Math.Abs(c) < tiny) c = tiny;
            var delta = dd * c;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-15) break;
        }
        return front * f / a;
    }

    /// <summary>ln Γ(x) for x &gt; 0 (Lanczos, g = 7, nine coefficients; about 15 digits).</summary>
    public static double LogGamma(double x)
    {
        if (x < 0.5) return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        ReadOnlySpan<double> g =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        x -= 1;
        var sum = g[0];
        for (var i = 1; i < g.Length; i++) sum += g[i] / (x + i);
        var t = x + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (x + 0.5) * Math.Log(t) - t + Math.Log(sum);
    }

    static double LogChoose(int n, int k) => LogGamma(n + 1) - LogGamma(k + 1) - LogGamma(n - k + 1);

    static void CheckFinite(IReadOnlyList<double> xs, string name)
    {
        for (var i = 0; i < xs.Count; i++)
            if (!double.IsFinite(xs[i])) throw new ArgumentException($"value {i} is {xs[i]}: statistics need finite values", name);
    }
}
