using TorchSharp;
using static TorchSharp.torch;

namespace Research.Stages.Merge;

/// <summary>
/// Edits of one task vector tau = theta - theta_0 (a "delta"). Inputs are not modified; results are new
/// float32 tensors the caller owns.
/// </summary>
public static class DeltaEdit
{
    /// <summary>Task vector theta - theta_0 in fp32.</summary>
    public static Tensor Delta(Tensor theta0, Tensor theta)
    {
        using var scope = NewDisposeScope();
        return (MergeRules.F32(theta) - MergeRules.F32(theta0)).MoveToOuterDisposeScope();
    }

    /// <summary>DARE drop-and-rescale: Bernoulli(density) keep mask, kept entries divided by density (E = tau).</summary>
    public static Tensor DropAndRescale(Tensor tau, double density, Generator generator) =>
        MergeRules.DropAndRescale(tau, density, generator, RescaleMode.Inverse);

    /// <summary>
    /// 1-bit delta (BitDelta, Liu et al. 2024, arXiv:2402.10193, at its initial scale): sign(tau) * mean|tau|,
    /// one scale per tensor; the L2-optimal scale for a sign pattern.
    /// </summary>
    public static Tensor SignScale(Tensor tau)
    {
        using var scope = NewDisposeScope();
        var x = MergeRules.F32(tau);
        return (x.sign() * x.abs().mean()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Best rank-r approximation of a 2-D tau (Eckart–Young): U_r diag(S_r) V_r^T from the thin SVD.
    /// r at or above min(rows, cols) returns tau (up to rounding).
    /// </summary>
    public static Tensor LowRank(Tensor tau, int rank)
    {
        var (a, b) = ExtractLora(tau, rank);
        using (a)
        using (b)
            return b.matmul(a);
    }

    /// <summary>Extrapolation along the delta: theta_0 + scale (theta - theta_0); scale &gt; 1 moves past theta (ExPO, arXiv:2404.16792).</summary>
    public static Tensor Extrapolate(Tensor theta0, Tensor theta, double scale)
    {
        using var scope = NewDisposeScope();
        var b = MergeRules.F32(theta0);
        return (b + (MergeRules.F32(theta) - b) * scale).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// LoRA factors of a 2-D tau (out, in) by truncated SVD: tau ~ B @ A with B = U_r sqrt(S_r) (out, r) and
    /// A = sqrt(S_r) V_r^T (r, in), splitting the singular values evenly. Exact (to rounding) when rank(tau) &lt;= r.
    /// r is capped at min(out, in).
    /// </summary>
    public static (Tensor A, Tensor B) ExtractLora(Tensor tau, int rank)
    {
        if (tau.dim() != 2) throw new ArgumentException($"a low-rank delta needs a 2-D tensor, got shape [{string.Join(", ", tau.shape)}]", nameof(tau));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rank);
        using var scope = NewDisposeScope();
        var x = MergeRules.F32(tau);
        var r = Math.Min(rank, Math.Min(x.shape[0], x.shape[1]));
        var (u, s, vh) = linalg.svd(x, fullMatrices: false);
        var root = s.narrow(0, 0, r).sqrt();
        var b = u.narrow(1, 0, r) * root.unsqueeze(0);       // (out, r)
        var a = vh.narrow(0, 0, r) * root.unsqueeze(1);      // (r, in)
        return (a.contiguous().MoveToOuterDisposeScope(), b.contiguous().MoveToOuterDisposeScope());
    }
}
