using Research.Data;
using System.Text;

namespace Research.Selection;

/// <summary>DSIR options. <paramref name="Buckets"/>: hash buckets of the n-gram features (the paper uses 10,000);
/// <paramref name="Smoothing"/>: pseudo-count added to every bucket before normalising (keeps log-ratios finite).</summary>
public sealed record DsirOptions(int Buckets = 10_000, double Smoothing = 1.0, int Seed = 0);

/// <summary>What a selection did: indices chosen from the pool and the KL (nats, over hashed features) from the
/// target to the selected subset and to a random subset of the same size (seeded), and their difference.</summary>
public sealed record DsirResult(int[] Selected, double[] LogWeights, double KlSelected, double KlRandom)
{
    /// <summary>KL(target ‖ random subset) − KL(target ‖ selected subset): how much closer to the target selection got.</summary>
    public double KlReduction => KlRandom - KlSelected;
}

/// <summary>
/// DSIR ("Data Selection for Language Models via Importance Resampling", Xie et al. 2023).
/// Each document becomes a vector of counts of its hashed unigrams and bigrams (lower-cased words, FNV-1a 64 mod m).
/// A bag-of-n-grams distribution is fitted to the target sample (p̂) and to the raw pool (q̂) with add-λ smoothing;
/// document i gets the log importance weight log w_i = Σ_j c_ij (log p̂_j − log q̂_j), and k documents are drawn
/// without replacement with probability ∝ w_i by the Gumbel top-k trick: the k largest log w_i + G_i, G_i ~ Gumbel(0, 1).
/// </summary>
public static class Dsir
{
    /// <summary>FNV-1a, 64 bits, over the UTF-8 bytes of <paramref name="text"/>.</summary>
    public static ulong Fnv1a64(string text)
    {
        var h = 0xcbf29ce484222325UL;
        foreach (var b in Encoding.UTF8.GetBytes(text)) h = unchecked((h ^ b) * 0x100000001b3UL);
        return h;
    }

    /// <summary>Lower-cased words: maximal runs of letters or digits.</summary>
    public static string[] Words(string text)
    {
        var words = new List<string>();
        var sb = new StringBuilder();
        foreach (var ch in text)
        {
            if (char.IsLetterOrDigit(ch)) sb.Append(char.ToLowerInvariant(ch));
            else if (sb.Length > 0) { words.Add(sb.ToString()); sb.Clear(); }
        }
        if (sb.Length > 0) words.Add(sb.ToString());
        return words.ToArray();
    }

    /// <summary>Bucket of an n-gram: unigram "w", bigram "w1 w2" (one space).</summary>
    public static int Bucket(string ngram, int buckets) => (int)(Fnv1a64(ngram) % (ulong)buckets);

    /// <summary>Hashed unigram + bigram counts of one text: a vector of length <paramref name="buckets"/>.</summary>
    public static double[] Features(string text, int buckets)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(buckets);
        var counts = new double[buckets];
        var words = Words(text);
        for (var i = 0; i < words.Length; i++)
        {
            counts[Bucket(words[i], buckets)] += 1;
            if (i + 1 < words.Length) counts[Bucket(words[i] + " " + words[i + 1], buckets)] += 1;
        }
        return counts;
    }

    /// <summary>Log of the smoothed categorical distribution fitted to summed counts: log((Σ_i c_ij + λ) / (Σ_ij c_ij + mλ)).</summary>
    public static double[] FitLogDistribution(IEnumerable<double[]> counts, int buckets, double smoothing)
    {
        if (!(smoothing > 0)) throw new ArgumentOutOfRangeException(nameof(smoothing), smoothing, "DSIR smoothing must be > 0 (a bucket seen in no document would get log 0)");
        var total = new double[buckets];
        foreach (var c in counts)
            for (var j = 0; j < buckets; j++) total[j] += c[j];
        var denominator = total.Sum() + buckets * smoothing;
        return total.Select(t => Math.Log((t + smoothing) / denominator)).ToArray();
    }

    /// <summary>log w = Σ_j c_j (log p̂_j − log q̂_j).</summary>
    public static double LogImportance(double[] counts, double[] logTarget, double[] logRaw)
    {
        double s = 0;
        for (var j = 0; j < counts.Length; j++)
            if (counts[j] != 0) s += counts[j] * (logTarget[j] - logRaw[j]);
        return s;
    }

    /// <summary>A standard Gumbel draw −log(−log U), U uniform in (0, 1).</summary>
    public static double Gumbel(Rng rng)
    {
        double u;
        do u = rng.NextDouble(); while (u == 0);
        return -Math.Log(-Math.Log(u));
    }

    /// <summary>
    /// k indices drawn without replacement with probability ∝ exp(logWeights): the top k of logWeights_i + G_i
    /// (Gumbel top-k; ties to the lower index). Deterministic in the seed; indices in the order drawn.
    /// </summary>
    public static int[] GumbelTopK(IReadOnlyList<double> logWeights, int k, int seed)
    {
        if (k < 0 || k > logWeights.Count)
            throw new ArgumentOutOfRangeException(nameof(k), k, $"cannot draw {k} items without replacement from {logWeights.Count}");
        var rng = new Rng(Rng.Derive(seed, 0x6d6));
        var keys = new double[logWeights.Count];
        for (var i = 0; i < keys.Length; i++) keys[i] = logWeights[i] + Gumbel(rng);
        return Enumerable.Range(0, keys.Length).OrderByDescending(i => keys[i]).ThenBy(i => i).Take(k).ToArray();
    }

    /// <summary>KL(p ‖ q) in nats between two distributions given as logs.</summary>
    public static double Kl(double[] logP, double[] logQ)
    {
        double s = 0;
        for (var j = 0; j < logP.Length; j++) s += Math.Exp(logP[j]) * (logP[j] - logQ[j]);
        return s;
    }

    /// <summary>Selects <paramref name="k"/> pool documents resembling the target; reports KL to the target of the selection and of a random subset of size k.</summary>
    public static DsirResult Select(IReadOnlyList<Document> target, IReadOnlyList<Document> pool, int k, DsirOptions? options = null)
    {
        var o = options ?? new DsirOptions();
        if (target.Count == 0) throw new ArgumentException("DSIR: the target sample has no documents");
        if (pool.Count == 0) throw new ArgumentException("DSIR: the raw pool has no documents");
        if (k <= 0 || k > pool.Count) throw new ArgumentOutOfRangeException(nameof(k), k, $"DSIR: can select between 1 and {pool.Count} pool documents");
        var targetFeatures = target.Select(d => Features(d.Text, o.Buckets)).ToArray();
        var poolFeatures = pool.Select(d => Features(d.Text, o.Buckets)).ToArray();
        var logP = FitLogDistribution(targetFeatures, o.Buckets, o.Smoothing);
        var logQ = FitLogDistribution(poolFeatures, o.Buckets, o.Smoothing);
        var logW = poolFeatures.Select(c => LogImportance(c, logP, logQ)).ToArray();
        var selected = GumbelTopK(logW, k, o.Seed);
        var random = new Rng(Rng.Derive(o.Seed, 0x7a4d)).Permutation(pool.Count)[..k];
        var klSelected = Kl(logP, FitLogDistribution(selected.Select(i => poolFeatures[i]), o.Buckets, o.Smoothing));
        var klRandom = Kl(logP, FitLogDistribution(random.Select(i => poolFeatures[i]), o.Buckets, o.Smoothing));
        return new DsirResult(selected, logW, klSelected, klRandom);
    }
}
