using TorchSharp;
using static TorchSharp.torch;

namespace Research.Stages.Merge;

/// <summary>How kept entries of a sparsified task vector are scaled back up.</summary>
public enum RescaleMode
{
    /// <summary>Kept entries stay as they are.</summary>
    None,
    /// <summary>
    /// Divide each kept entry by its keep probability: 1/density for DARE (Yu et al. 2023, arXiv:2311.03099),
    /// 1/p_i for DELLA (Deep et al. 2024, arXiv:2406.11617). Unbiased: E[result] = tau. The default here.
    /// </summary>
    Inverse,
    /// <summary>Scale the kept entries so their L1 norm equals the original's (what mergekit does for <c>rescale: true</c>).</summary>
    L1,
}

/// <summary>
/// The merge rules as pure tensor functions. Inputs may be any float dtype and are never modified; every
/// result is a new float32 tensor (compute is fp32) that the caller owns. Task vector tau_i = theta_i - theta_0.
/// Randomised rules (DARE, DELLA) draw from the <see cref="Generator"/> they are given, so a caller that seeds
/// it from (seed, tensor name) gets a reproducible merge.
/// </summary>
public static class MergeRules
{
    // ---------------------------------------------------------------- interpolations

    /// <summary>
    /// Linear (model soup; Wortsman et al. 2022, arXiv:2203.05482): sum_i w_i theta_i, divided by sum_i w_i
    /// when <paramref name="normalize"/> (the default; a weight sum below 1e-8 divides by 1).
    /// </summary>
    public static Tensor Linear(IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights, bool normalize = true)
    {
        CheckCounts(thetas, weights, nameof(weights));
        using var scope = NewDisposeScope();
        // One pass per model (the first writes the sum, each other adds into it): a merge is memory-bound, so the weights are
        // divided by their sum up front instead of dividing the result in a pass of its own.
        var total = weights.Sum();
        var scale = normalize && Math.Abs(total) >= 1e-8 ? 1 / total : 1;
        var sum = F32(thetas[0]).mul(weights[0] * scale);
        for (var i = 1; i < thetas.Count; i++) sum.add_(F32(thetas[i]), alpha: weights[i] * scale);
        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// SLERP (Shoemake 1985), as mergekit applies it: both tensors are flattened; with unit directions
    /// v0 = a/|a|, v1 = b/|b| and dot = v0.v1, theta = arccos(dot), the result is
    /// sin((1-t) theta)/sin(theta) a + sin(t theta)/sin(theta) b. When |dot| &gt; <paramref name="dotThreshold"/>
    /// (nearly colinear) it falls back to lerp (1-t) a + t b. t = 0 gives a, t = 1 gives b.
    /// </summary>
    public static Tensor Slerp(Tensor a, Tensor b, double t, double dotThreshold = 0.9995, double eps = 1e-8)
    {
        CheckSameShape(a, b);
        using var scope = NewDisposeScope();
        var fa = F32(a);
        var fb = F32(b);
        var na = fa.norm().ToDouble();
        var nb = fb.norm().ToDouble();
        var dot = (fa * fb).sum().ToDouble() / ((na > eps ? na : 1) * (nb > eps ? nb : 1));
        Tensor result;
        if (Math.Abs(dot) > dotThreshold)
            result = fa * (1 - t) + fb * t;
        else
        {
            var theta = Math.Acos(Math.Clamp(dot, -1, 1));
            var sin = Math.Sin(theta);
            result = fa * (Math.Sin((1 - t) * theta) / sin) + fb * (Math.Sin(t * theta) / sin);
        }
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Model Stock (Jang et al. 2024, arXiv:2403.19522): t = N cos / (1 + (N-1) cos) with cos the mean pairwise
    /// cosine of the N task vectors (flattened); result t mean_i(theta_i) + (1 - t) theta_0. Needs N &gt;= 2.
    /// </summary>
    public static Tensor ModelStock(Tensor theta0, IReadOnlyList<Tensor> thetas)
    {
        if (thetas.Count < 2) throw new ArgumentException("model_stock needs the base and at least two other models.", nameof(thetas));
        using var scope = NewDisposeScope();
        var b = F32(theta0);
        var taus = thetas.Select(x => { CheckSameShape(theta0, x); return (F32(x) - b).flatten(); }).ToArray();
        double cosSum = 0;
        var pairs = 0;
        for (var i = 0; i < taus.Length; i++)
            for (var j = i + 1; j < taus.Length; j++)
            {
                var denom = Math.Max(taus[i].norm().ToDouble() * taus[j].norm().ToDouble(), 1e-6);
                cosSum += Math.Clamp((taus[i] * taus[j]).sum().ToDouble() / denom, -1, 1);
                pairs++;
            }
        var t = ModelStockRatio(cosSum / pairs, thetas.Count);
        var mean = zeros_like(b);
        foreach (var x in thetas) mean.add_(F32(x));
        mean.div_(thetas.Count);
        return (mean * t + b * (1 - t)).MoveToOuterDisposeScope();
    }

    /// <summary>Model Stock's interpolation ratio t = N cos / (1 + (N-1) cos).</summary>
    public static double ModelStockRatio(double cos, int n) => n * cos / (1 + (n - 1) * cos);

    // ---------------------------------------------------------------- task arithmetic family

    /// <summary>
    /// Task arithmetic (Ilharco et al. 2023, arXiv:2212.04089): theta_0 + lambda sum_i w_i tau_i
    /// (divided by sum_i w_i when <paramref name="normalize"/>; off by default, as in mergekit).
    /// </summary>
    public static Tensor TaskArithmetic(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        double lambda = 1, bool normalize = false) =>
        Generalized(theta0, thetas, weights, (_, tau) => tau, consensus: false, normalize, lambda);

    /// <summary>
    /// TIES (Yadav et al. 2023, arXiv:2306.01708): trim each tau_i to its top-density fraction by magnitude
    /// (k = floor(density n) entries); elect the sign s = sign(sum_i w_i tau_i') per entry (mergekit's "sum"
    /// method; a zero sum elects +); keep the entries whose w_i tau_i' has sign s; disjoint mean: the kept sum
    /// divided by the sum of the kept weights (normalize, on by default); times lambda; added to theta_0.
    /// </summary>
    public static Tensor Ties(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        IReadOnlyList<double> densities, double lambda = 1, bool normalize = true)
    {
        CheckCounts(thetas, densities, nameof(densities));
        return Generalized(theta0, thetas, weights, (i, tau) => TopK(tau, densities[i]), consensus: true, normalize, lambda);
    }

    /// <summary>
    /// DARE (Yu et al. 2023, arXiv:2311.03099) then task arithmetic (<paramref name="ties"/> false: dare_linear)
    /// or TIES sign election (true: dare_ties): each tau_i keeps entries with a Bernoulli(density_i) mask,
    /// rescaled by 1/density_i (the paper; default) or by L1-norm matching (mergekit). Normalize off by default.
    /// </summary>
    public static Tensor Dare(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        IReadOnlyList<double> densities, IReadOnlyList<Generator> generators, bool ties, double lambda = 1,
        bool normalize = false, RescaleMode rescale = RescaleMode.Inverse)
    {
        CheckCounts(thetas, densities, nameof(densities));
        CheckCounts(thetas, generators, nameof(generators));
        return Generalized(theta0, thetas, weights, (i, tau) => DropAndRescale(tau, densities[i], generators[i], rescale),
            consensus: ties, normalize, lambda);
    }

    /// <summary>
    /// Model Breadcrumbs (Davari &amp; Belilovsky 2023, arXiv:2312.06795), with mergekit's semantics: per tau_i,
    /// sorted by magnitude, drop the top floor(gamma n) entries (outliers) and then the smallest, so that
    /// floor(density n) remain (fewer outliers dropped if both cannot hold); then task arithmetic
    /// (<paramref name="ties"/> false) or TIES election (breadcrumbs_ties). No rescale, normalize off.
    /// </summary>
    public static Tensor Breadcrumbs(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        IReadOnlyList<double> densities, IReadOnlyList<double> gammas, bool ties = false, double lambda = 1, bool normalize = false)
    {
        CheckCounts(thetas, densities, nameof(densities));
        CheckCounts(thetas, gammas, nameof(gammas));
        return Generalized(theta0, thetas, weights, (i, tau) => BreadcrumbsMask(tau, densities[i], gammas[i]),
            consensus: ties, normalize, lambda);
    }

    /// <summary>
    /// DELLA (Deep et al. 2024, arXiv:2406.11617), MagPrune: within each row of tau_i (a 1-D tensor is one row),
    /// rank entries by magnitude; keep probabilities rise linearly with rank from density - epsilon (smallest)
    /// to density + epsilon (largest); Bernoulli-keep and rescale kept entries by 1/p_i (the paper; default)
    /// or L1 matching; then TIES election (<paramref name="ties"/> true: della) or a plain sum (della_linear).
    /// Normalize defaults on for della, off for della_linear (mergekit's defaults).
    /// </summary>
    public static Tensor Della(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        IReadOnlyList<double> densities, IReadOnlyList<double> epsilons, IReadOnlyList<Generator> generators,
        bool ties = true, double lambda = 1, bool normalize = true, RescaleMode rescale = RescaleMode.Inverse)
    {
        CheckCounts(thetas, densities, nameof(densities));
        CheckCounts(thetas, epsilons, nameof(epsilons));
        CheckCounts(thetas, generators, nameof(generators));
        return Generalized(theta0, thetas, weights, (i, tau) => MagPrune(tau, densities[i], epsilons[i], generators[i], rescale),
            consensus: ties, normalize, lambda);
    }

    /// <summary>
    /// The shared skeleton: tau_i' = sparsify(i, tau_i); with <paramref name="consensus"/>, mask entries whose
    /// w_i tau_i' disagrees with sign(sum_i w_i tau_i') (zero entries never agree); mixed = sum of the kept
    /// w_i tau_i'; divisor = sum of the kept w_i (consensus) or sum w_i, zero replaced by 1; divide when
    /// normalize; result theta_0 + lambda mixed.
    /// </summary>
    public static Tensor Generalized(Tensor theta0, IReadOnlyList<Tensor> thetas, IReadOnlyList<double> weights,
        Func<int, Tensor, Tensor> sparsify, bool consensus, bool normalize, double lambda)
    {
        CheckCounts(thetas, weights, nameof(weights));
        // Memory: a streaming merge's peak is this function's live tensors. The N sparsified deltas are whole tensors (a
        // sparsifier such as TIES' trim ranks a whole task vector); the sign election and the mix are elementwise, so they run
        // over blocks of entries, writing into the result: at most N + 1 tensors of this shape, plus one sparsifier's own.
        using var scope = NewDisposeScope();
        using var deltas = empty([thetas.Count, .. theta0.shape], ScalarType.Float32);   // (N, ...)
        for (var i = 0; i < thetas.Count; i++)
        {
            CheckSameShape(theta0, thetas[i]);
            using var row = deltas[i];
            row.copy_(thetas[i]);                                               // converts to float32
            row.sub_(theta0);
            var sparse = sparsify(i, row);
            if (!ReferenceEquals(sparse, row))                                  // task arithmetic's sparsifier is the identity
            {
                row.copy_(sparse);
                sparse.Dispose();
            }
            row.mul_(weights[i]);
        }
        var total = weights.Sum();
        var mixed = empty(theta0.shape, ScalarType.Float32);
        using var flatDeltas = deltas.view(thetas.Count, -1);
        using var flatMixed = mixed.view(-1);
        using var flatBase = theta0.reshape(-1);
        var n = flatMixed.numel();
        for (long start = 0; start < n; start += MixBlock)
        {
            using var inner = NewDisposeScope();
            var len = Math.Min(MixBlock, n - start);
            var d = flatDeltas.narrow(1, start, len);                           // (N, len)
            var outPart = flatMixed.narrow(0, start, len);
            outPart.copy_(d.sum(0L));
            if (consensus)
            {
                // elected sign: +1 where the weighted sum is >= 0, else -1; an entry is kept when its sign equals it.
                var elected = outPart.ge(0).to_type(ScalarType.Float32).mul_(2).sub_(1);
                var divisor = normalize ? zeros_like(outPart) : null;
                outPart.zero_();
                for (var i = 0; i < thetas.Count; i++)
                {
                    var row = d[i];
                    var keep = row.sign().eq_(elected);                         // 1 where kept, else 0
                    outPart.addcmul_(row, keep, 1);
                    divisor?.add_(keep, alpha: weights[i]);
                }
                if (divisor is not null)
                {
                    divisor.masked_fill_(divisor.eq(0), 1);
                    outPart.div_(divisor);
                }
            }
            else if (normalize) outPart.div_(Math.Abs(total) < 1e-8 ? 1 : total);
            outPart.mul_(lambda).add_(flatBase.narrow(0, start, len));
        }
        return mixed.MoveToOuterDisposeScope();
    }

    /// <summary>Entries per block of the elementwise part of <see cref="Generalized"/> (sign election and mix).</summary>
    const long MixBlock = 1L << 16;

    // ---------------------------------------------------------------- sparsifiers (one task vector)

    /// <summary>
    /// Keeps the floor(density n) largest-magnitude entries, zeroes the rest (TIES trim); equal magnitudes at the cut are
    /// kept in order of position. density &gt;= 1 keeps all.
    /// </summary>
    public static Tensor TopK(Tensor tau, double density)
    {
        if (density >= 1) return tau.to_type(ScalarType.Float32, copy: true);
        var k = (long)Math.Floor(density * tau.numel());
        return MagnitudeRanks.KeepWindow(tau, 0, Math.Max(0, k));
    }

    /// <summary>
    /// Breadcrumbs mask: drops the floor(gamma n) largest-magnitude entries and the smallest, keeping floor(density n)
    /// (equal magnitudes ranked by position, as in <see cref="TopK"/>).
    /// </summary>
    public static Tensor BreadcrumbsMask(Tensor tau, double density, double gamma)
    {
        if (density >= 1) return tau.to_type(ScalarType.Float32, copy: true);
        var n = tau.numel();
        var target = (long)Math.Floor(density * n);
        var top = (long)Math.Floor(gamma * n);
        var bottom = n - target - top;
        if (bottom < 0) { top += bottom; bottom = 0; }
        return MagnitudeRanks.KeepWindow(tau, top, Math.Max(0, n - top - bottom));
    }

    /// <summary>DARE's drop: keep each entry with probability density, then rescale (see <see cref="RescaleMode"/>).</summary>
    public static Tensor DropAndRescale(Tensor tau, double density, Generator generator, RescaleMode rescale = RescaleMode.Inverse)
    {
        using var scope = NewDisposeScope();
        var x = F32(tau);
        if (density >= 1) return x.clone().MoveToOuterDisposeScope();
        if (density <= 0) return zeros_like(x).MoveToOuterDisposeScope();
        // The mask is drawn into the result's own buffer, which then takes the kept values: one tensor, no probabilities tensor.
        var kept = empty_like(x).bernoulli_(density, generator).mul_(x);
        return RescaleInPlace(kept, x, rescale, k => k.div_(density)).MoveToOuterDisposeScope();
    }

    /// <summary>DELLA's MagPrune on one task vector: rank-linear keep probabilities in [density - epsilon, density + epsilon] per row.</summary>
    public static Tensor MagPrune(Tensor tau, double density, double epsilon, Generator generator, RescaleMode rescale = RescaleMode.Inverse)
    {
        using var scope = NewDisposeScope();
        var x = F32(tau);
        if (density >= 1) return x.clone().MoveToOuterDisposeScope();
        if (density <= 0) return zeros_like(x).MoveToOuterDisposeScope();
        if (density - epsilon <= 0 || density + epsilon > 1)
            throw new ArgumentException($"della: density {density} +/- epsilon {epsilon} must stay in (0, 1].");
        var probs = KeepProbabilities(x, density, epsilon);
        var kept = bernoulli(probs, generator).mul_(x);                        // the mask's own buffer takes the kept values
        return RescaleInPlace(kept, x, rescale, k => k.div_(probs)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// DELLA's keep probabilities: per row (1-D = one row), p = density - epsilon + 2 epsilon (r - 1)/(m - 1),
    /// r the ascending magnitude rank (1..m) within the row; a row of one entry gets density - epsilon.
    /// </summary>
    public static Tensor KeepProbabilities(Tensor tau, double density, double epsilon)
    {
        using var scope = NewDisposeScope();
        var x = F32(tau);
        var rows = x.dim() < 2 ? x.view(1, -1) : x.reshape(x.shape[0], -1);
        var (n, m) = (rows.shape[0], rows.shape[1]);
        var probs = empty(n, m, ScalarType.Float32);
        // Ascending rank 0..m-1 of each entry within its row: an argsort, then the ranks scattered to the sorted positions.
        // A block of rows at a time (about 65,000 entries), so the int64 indices and sort buffers stay small against a
        // large matrix: the streaming merge's peak.
        var block = Math.Max(1, (1L << 16) / Math.Max(1, m));
        using var ramp = arange(m, dtype: ScalarType.Float32);
        for (long start = 0; start < n; start += block)
        {
            using var inner = NewDisposeScope();
            var len = Math.Min(block, n - start);
            var part = rows.narrow(0, start, len);
            var order = part.abs().argsort(dim: 1);
            var target = probs.narrow(0, start, len);
            target.zero_().scatter_(1, order, ramp.expand(len, m));
            if (m > 1) target.mul_(2 * epsilon / (m - 1));
            target.add_(density - epsilon);
        }
        return probs.view(x.shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <paramref name="kept"/> (the kept entries of <paramref name="x"/>, zeros elsewhere) rescaled in place: by
    /// <paramref name="inverse"/> (division by the keep probabilities) or to x's L1 norm; returns it.
    /// </summary>
    static Tensor RescaleInPlace(Tensor kept, Tensor x, RescaleMode rescale, Action<Tensor> inverse)
    {
        switch (rescale)
        {
            case RescaleMode.None: break;
            case RescaleMode.Inverse: inverse(kept); break;
            case RescaleMode.L1:
                var before = x.abs().sum().ToDouble();
                var after = kept.abs().sum().ToDouble();
                if (before >= 1e-7 && after >= 1e-7) kept.mul_(before / after);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(rescale));
        }
        return kept;
    }

    // ---------------------------------------------------------------- helpers

    internal static Tensor F32(Tensor t) => t.dtype == ScalarType.Float32 ? t.alias() : t.to_type(ScalarType.Float32);

    static void CheckSameShape(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"shapes differ: [{string.Join(", ", a.shape)}] vs [{string.Join(", ", b.shape)}]");
    }

    static void CheckCounts<T, U>(IReadOnlyList<T> thetas, IReadOnlyList<U> other, string what)
    {
        if (thetas.Count == 0) throw new ArgumentException("no models to merge");
        if (other.Count != thetas.Count) throw new ArgumentException($"{thetas.Count} models but {other.Count} {what}");
    }
}
