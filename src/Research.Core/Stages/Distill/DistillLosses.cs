using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>Which divergence between teacher T and student S a distillation loss uses, per token.</summary>
public enum Divergence
{
    /// <summary>KL(p_T || p_S): mode-covering (classic KD; torchtune ForwardKLLoss up to the teacher's entropy).</summary>
    Forward,
    /// <summary>KL(p_S || p_T): mode-seeking (MiniLLM; torchtune ReverseKLLoss).</summary>
    Reverse,
    /// <summary>r KL(p_T || p_S) + (1 - r) KL(p_S || p_T) with r = <see cref="DistillOptions.SymmetricRatio"/> (torchtune SymmetricKLLoss).</summary>
    Symmetric,
    /// <summary>Generalised JSD of TRL GKD with b = <see cref="DistillOptions.Beta"/>; b = 0 forward KL, b = 1 reverse KL.</summary>
    GeneralizedJsd,
}

/// <summary>Options of the distillation losses. Defaults: TRL GKD (beta 0.5, temperature 1) and torchtune KD (kd_ratio 0.5).</summary>
public sealed partial record DistillOptions
{
    public Divergence Divergence { get; init; } = Divergence.GeneralizedJsd;
    /// <summary>GJSD interpolation b in [0, 1] (TRL GKD default 0.5).</summary>
    public double Beta { get; init; } = 0.5;
    /// <summary>Both logits are divided by it before the softmax; 1 = the models' own distributions. No T^2 factor is applied (as TRL).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Share of the distillation term in the CE/KD mix: (1 - r) CE + r KD (torchtune kd_ratio 0.5).</summary>
    public double KdRatio { get; init; } = 0.5;
    /// <summary>Weight of the forward KL in <see cref="Divergence.Symmetric"/> (torchtune sym_kl_ratio 0.5).</summary>
    public double SymmetricRatio { get; init; } = 0.5;

    public void Validate()
    {
        if (Beta is < 0 or > 1) throw new ArgumentException($"distill: beta must be in [0, 1] (got {Beta})");
        if (!(Temperature > 0)) throw new ArgumentException($"distill: temperature must be > 0 (got {Temperature})");
        if (KdRatio is < 0 or > 1) throw new ArgumentException($"distill: kd_ratio must be in [0, 1] (got {KdRatio})");
        if (SymmetricRatio is < 0 or > 1) throw new ArgumentException($"distill: symmetric_ratio must be in [0, 1] (got {SymmetricRatio})");
    }
}

/// <summary>Summed mix and its two parts (scalars): Loss = (1 - kd_ratio) CrossEntropy + kd_ratio Divergence.</summary>
public sealed record DistillLoss(Tensor Loss, Tensor CrossEntropy, Tensor Divergence);

/// <summary>
/// Distillation losses. Divergences are per token on the vocabulary distributions; the summed forms keep only
/// scored tokens (targets != -100) and SUM them, so the Trainer's division by the batch's tokens makes them per-token means.
/// </summary>
public static class DistillLosses
{
    const double MinLogProb = -1e30;

    /// <summary>
    /// KL(P || Q) over the last axis from log-probs (..., V) → (...). Terms with P = 0 count 0, and their log-probs are
    /// replaced before the product so that -inf logits (a padded vocabulary) give neither NaN values nor NaN gradients.
    /// </summary>
    public static Tensor Kl(Tensor logP, Tensor logQ)
    {
        var p = logP.exp();
        var support = p.gt(0);
        return (p * (logP.masked_fill(support.logical_not(), 0) - logQ.masked_fill(support.logical_not(), 0))).sum(-1);
    }

    /// <summary>
    /// Generalised JSD (TRL GKD), log-probs of student and teacher (..., V) → (...):
    /// m = b p_T + (1-b) p_S, JSD_b = b KL(p_T || m) + (1-b) KL(p_S || m) for 0 &lt; b &lt; 1.
    /// As b → 0, JSD_b ≈ b KL(p_T || p_S) vanishes; TRL (and this) defines b = 0 as KL(p_T || p_S) (forward)
    /// and b = 1 as KL(p_S || p_T) (reverse), computed directly, not through the mixture.
    /// </summary>
    public static Tensor GeneralizedJsd(Tensor logS, Tensor logT, double beta)
    {
        if (beta == 0) return Kl(logT, logS);
        if (beta == 1) return Kl(logS, logT);
        // -inf log-probs (padded vocabulary) are floored first: logsumexp of two -inf has a NaN gradient.
        var logM = stack([logS.clamp_min(MinLogProb) + Math.Log(1 - beta), logT.clamp_min(MinLogProb) + Math.Log(beta)]).logsumexp(0);   // (..., V)
        return beta * Kl(logT, logM) + (1 - beta) * Kl(logS, logM);
    }

    /// <summary>The divergence chosen in <paramref name="options"/> between log-probs (..., V) → (...).</summary>
    public static Tensor DivergenceOf(Tensor logS, Tensor logT, DistillOptions options) => options.Divergence switch
    {
        Divergence.Forward => Kl(logT, logS),
        Divergence.Reverse => Kl(logS, logT),
        Divergence.Symmetric => options.SymmetricRatio * Kl(logT, logS) + (1 - options.SymmetricRatio) * Kl(logS, logT),
        Divergence.GeneralizedJsd => GeneralizedJsd(logS, logT, options.Beta),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Divergence, "unknown divergence"),
    };

    /// <summary>Per-token divergence, every position: student and teacher logits (B, T, V) → (B, T), fp32, temperature applied to both.</summary>
    public static Tensor PerToken(Tensor studentLogits, Tensor teacherLogits, DistillOptions options)
    {
        options.Validate();
        CheckSameShape(studentLogits, teacherLogits);
        return DivergenceOf(LogProbs(studentLogits, options.Temperature), LogProbs(teacherLogits, options.Temperature), options);
    }

    /// <summary>
    /// Summed divergence over scored tokens: logits (B, T, V), targets (B, T) with -100 = not scored → scalar.
    /// Unscored positions are dropped before the softmax, so nothing there (not even inf/NaN logits) reaches the loss.
    /// </summary>
    public static Tensor Summed(Tensor studentLogits, Tensor teacherLogits, Tensor targets, DistillOptions options)
    {
        options.Validate();
        CheckSameShape(studentLogits, teacherLogits);
        var (s, t) = (Scored(studentLogits, targets), Scored(teacherLogits, targets));           // (N, V)
        return DivergenceOf(LogProbs(s, options.Temperature), LogProbs(t, options.Temperature), options).sum();
    }

    /// <summary>
    /// Summed divergence with only the teacher's top-K logits (values (B, T, K), vocabulary indices (B, T, K) int64),
    /// as stored by offline distillation. Approximation: both distributions are restricted to the teacher's top-K tokens
    /// and renormalised there (student logits gathered at the same indices), so every divergence is finite; the student's
    /// mass outside the top-K gets no gradient, and the teacher's tail mass is ignored. Exact when K = V.
    /// </summary>
    public static Tensor SummedTopK(Tensor studentLogits, Tensor teacherValues, Tensor teacherIndices, Tensor targets, DistillOptions options)
    {
        options.Validate();
        if (teacherValues.dim() != 3 || !teacherValues.shape.SequenceEqual(teacherIndices.shape) || teacherValues.shape[0] != studentLogits.shape[0] || teacherValues.shape[1] != studentLogits.shape[1])
            throw new ArgumentException($"distill top-k: teacher values and indices must both be (B, T, K) matching the student's (B, T, V) = [{string.Join(", ", studentLogits.shape)}]; got [{string.Join(", ", teacherValues.shape)}] and [{string.Join(", ", teacherIndices.shape)}]");
        var s = Scored(studentLogits, targets);                                                  // (N, V)
        var idx = Scored(teacherIndices, targets);                                               // (N, K)
        var tv = Scored(teacherValues, targets);                                                 // (N, K)
        var sk = s.gather(-1, idx);                                                              // (N, K)
        return DivergenceOf(LogProbs(sk, options.Temperature), LogProbs(tv, options.Temperature), options).sum();
    }

    /// <summary>
    /// torchtune's KD mix, both parts summed over scored tokens: (1 - kd_ratio) CE(student, targets) + kd_ratio D(teacher, student).
    /// The CE is on the student's own logits (no temperature); D is <see cref="Summed"/>.
    /// </summary>
    public static DistillLoss Mixed(Tensor studentLogits, Tensor teacherLogits, Tensor targets, DistillOptions options)
    {
        var ce = TokenLoss.SummedCrossEntropy(studentLogits, targets);
        var kd = Summed(studentLogits, teacherLogits, targets, options);
        return new DistillLoss((1 - options.KdRatio) * ce + options.KdRatio * kd, ce, kd);
    }

    static Tensor LogProbs(Tensor logits, double temperature) =>
        (temperature == 1 ? logits.to(float32) : logits.to(float32) / temperature).log_softmax(-1);

    /// <summary>Rows (B, T, X) at scored targets → (N, X).</summary>
    static Tensor Scored(Tensor x, Tensor targets)
    {
        if (x.shape[0] != targets.shape[0] || x.shape[1] != targets.shape[1])
            throw new ArgumentException($"distill: targets [{string.Join(", ", targets.shape)}] do not match logits [{string.Join(", ", x.shape)}]");
        return x[targets.ne(TokenLoss.IgnoreIndex)];
    }

    static void CheckSameShape(Tensor student, Tensor teacher)
    {
        if (student.dim() != 3 || !student.shape.SequenceEqual(teacher.shape))
            throw new ArgumentException($"distill: student and teacher logits must both be (B, T, V); got [{string.Join(", ", student.shape)}] and [{string.Join(", ", teacher.shape)}] (different vocabularies need the top-k form or a shared tokenizer)");
    }
}
