using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>How group-relative advantages are scaled (TRL's <c>scale_rewards</c>).</summary>
public enum AdvantageScale
{
    /// <summary>(r - mean of the group) / (std of the group + 1e-4): GRPO (Shao et al. 2024, arXiv:2402.03300).</summary>
    Group,
    /// <summary>(r - mean of the group) / (std of the whole batch + 1e-4).</summary>
    Batch,
    /// <summary>r - mean of the group, unscaled: Dr. GRPO (Liu et al. 2025, arXiv:2503.20783).</summary>
    None,
}

/// <summary>What each reward is compared with to make its advantage.</summary>
public enum Baseline
{
    /// <summary>The mean of the prompt's G rewards, itself included (GRPO).</summary>
    GroupMean,
    /// <summary>The mean of the prompt's other G - 1 rewards: an unbiased baseline (RLOO, Ahmadian et al. 2024, arXiv:2402.14740).</summary>
    LeaveOneOut,
}

/// <summary>How per-token losses become one number (TRL's <c>loss_type</c>).</summary>
public enum LossAggregation
{
    /// <summary>Mean over each completion's tokens, then over completions (GRPO's sequence-level mean).</summary>
    Grpo,
    /// <summary>Sum over every active token of the micro-batch / their number.</summary>
    Bnpo,
    /// <summary>Sum over every active token / (completions x the maximum completion length): no length bias (Dr. GRPO).</summary>
    DrGrpo,
    /// <summary>Sum over every active token / the active tokens of the whole rollout batch: token-level (DAPO, Yu et al. 2025, arXiv:2503.14476).</summary>
    Dapo,
}

/// <summary>The per-token surrogate of a batch and what it clipped.</summary>
public sealed record SurrogateResult(Tensor PerTokenLoss, Tensor Ratio, Tensor ClippedLow, Tensor ClippedHigh, Tensor? Kl);

/// <summary>
/// The losses of on-policy training as pure tensor functions (float64 or float32 in, the same out), each tested against
/// hand-computed values. Shapes: rewards (N·G) with each prompt's G completions adjacent; log-probs (B, T) of the
/// sampled tokens; masks (B, T), 1 on completion tokens.
/// </summary>
public static class GrpoLosses
{
    /// <summary>TRL's guard against a zero standard deviation.</summary>
    public const double StdEpsilon = 1e-4;

    /// <summary>Group-relative advantages: rewards minus their group's mean, scaled as <paramref name="scale"/> says (std: unbiased).</summary>
    public static Tensor GroupAdvantages(Tensor rewards, int groupSize, AdvantageScale scale = AdvantageScale.Group)
    {
        using var scope = NewDisposeScope();
        var grouped = Grouped(rewards, groupSize);
        var centred = (grouped - grouped.mean([1], keepdim: true)).reshape(-1);
        var result = scale switch
        {
            AdvantageScale.Group => centred / (grouped.std(1, unbiased: true, keepdim: true).expand_as(grouped).reshape(-1) + StdEpsilon),
            AdvantageScale.Batch => centred / (rewards.std(unbiased: true) + StdEpsilon),
            _ => centred,
        };
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>The advantages of <paramref name="baseline"/>: group-relative (scaled as said) or leave-one-out (unscaled: RLOO).</summary>
    public static Tensor Advantages(Tensor rewards, int groupSize, Baseline baseline, AdvantageScale scale) => baseline switch
    {
        Baseline.GroupMean => GroupAdvantages(rewards, groupSize, scale),
        Baseline.LeaveOneOut when scale == AdvantageScale.None => LeaveOneOutAdvantages(rewards, groupSize),
        Baseline.LeaveOneOut => throw new ArgumentException("RLOO's leave-one-out advantages are not scaled: use AdvantageScale.None"),
        _ => throw new ArgumentOutOfRangeException(nameof(baseline)),
    };

    /// <summary>RLOO (Ahmadian et al. 2024, arXiv:2402.14740): each reward minus the mean of the other G - 1 in its group.</summary>
    public static Tensor LeaveOneOutAdvantages(Tensor rewards, int groupSize)
    {
        if (groupSize < 2) throw new ArgumentException($"RLOO needs a group size of at least 2 (got {groupSize}): the baseline is the others' mean");
        using var scope = NewDisposeScope();
        var grouped = Grouped(rewards, groupSize);
        var others = (grouped.sum([1], keepdim: true) - grouped) / (groupSize - 1);
        return (grouped - others).reshape(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A group whose rewards are all equal has zero advantages and teaches nothing: true for the groups to keep (DAPO's
    /// dynamic sampling; the instance filtering of rollout-based RFT).
    /// </summary>
    public static bool[] InformativeGroups(Tensor rewards, int groupSize)
    {
        using var grouped = Grouped(rewards, groupSize);
        using var max = grouped.amax([1]);
        using var min = grouped.amin([1]);
        using var keep = max.gt(min);
        return keep.data<bool>().ToArray();
    }

    /// <summary>The k3 estimator of KL(policy || reference) per token: exp(ref - logp) - (ref - logp) - 1 (Schulman 2020), never negative.</summary>
    public static Tensor K3(Tensor logProbs, Tensor referenceLogProbs)
    {
        using var scope = NewDisposeScope();
        var d = referenceLogProbs - logProbs;
        return (d.exp() - d - 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The clipped surrogate per token: ratio = exp(logp - old logp), loss = -min(ratio A, clip(ratio, 1 - epsLow,
    /// 1 + epsHigh) A) (clip-higher when epsHigh &gt; epsLow, DAPO), plus beta k3 when beta &gt; 0 (then the reference
    /// log-probs are required). <paramref name="advantages"/> is one value per completion (B).
    /// </summary>
    public static SurrogateResult Surrogate(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, double epsLow = 0.2, double epsHigh = 0.2,
        double beta = 0, Tensor? referenceLogProbs = null)
    {
        if (!(epsLow >= 0 && epsLow < 1)) throw new ArgumentOutOfRangeException(nameof(epsLow), epsLow, "the low clip range must be in [0, 1)");
        if (!(epsHigh >= 0)) throw new ArgumentOutOfRangeException(nameof(epsHigh), epsHigh, "the high clip range must be >= 0");
        if (beta > 0 && referenceLogProbs is null) throw new ArgumentException("a KL penalty (beta > 0) needs the reference model's log-probs");
        if (!logProbs.shape.SequenceEqual(oldLogProbs.shape))
            throw new ArgumentException($"log-probs [{string.Join(", ", logProbs.shape)}] and old log-probs [{string.Join(", ", oldLogProbs.shape)}] differ in shape");
        if (advantages.shape.Length != 1 || advantages.shape[0] != logProbs.shape[0])
            throw new ArgumentException($"one advantage per completion: {logProbs.shape[0]} completions but advantages of shape [{string.Join(", ", advantages.shape)}]");
        using var scope = NewDisposeScope();
        var a = advantages.unsqueeze(1);
        var ratio = (logProbs - oldLogProbs).exp();
        var clipped = ratio.clamp(1 - epsLow, 1 + epsHigh);
        var loss = -minimum(ratio * a, clipped * a);
        var low = ratio.lt(1 - epsLow).logical_and(a.lt(0));
        var high = ratio.gt(1 + epsHigh).logical_and(a.gt(0));
        Tensor? kl = null;
        if (referenceLogProbs is not null)
        {
            kl = K3(logProbs, referenceLogProbs);
            if (beta > 0) loss = loss + beta * kl;
            kl = kl.MoveToOuterDisposeScope();
        }
        return new SurrogateResult(loss.MoveToOuterDisposeScope(), ratio.MoveToOuterDisposeScope(), low.MoveToOuterDisposeScope(), high.MoveToOuterDisposeScope(), kl);
    }

    /// <summary>
    /// One loss from per-token losses (B, T) under a mask: <paramref name="maxCompletionLength"/> is needed by Dr. GRPO,
    /// <paramref name="rolloutTokens"/> (the active tokens of the whole rollout batch, over every micro-batch) by DAPO.
    /// </summary>
    public static Tensor Aggregate(Tensor perTokenLoss, Tensor mask, LossAggregation how, int maxCompletionLength = 0, long rolloutTokens = 0)
    {
        if (!perTokenLoss.shape.SequenceEqual(mask.shape))
            throw new ArgumentException($"per-token loss [{string.Join(", ", perTokenLoss.shape)}] and mask [{string.Join(", ", mask.shape)}] differ in shape");
        using var scope = NewDisposeScope();
        var m = mask.to(perTokenLoss.dtype);
        var masked = perTokenLoss * m;
        var result = how switch
        {
            LossAggregation.Grpo => (masked.sum(1) / m.sum(1).clamp_min(1)).mean(),
            LossAggregation.Bnpo => masked.sum() / m.sum().clamp_min(1),
            LossAggregation.DrGrpo => maxCompletionLength > 0
                ? masked.sum() / (perTokenLoss.shape[0] * (double)maxCompletionLength)
                : throw new ArgumentException("Dr. GRPO's aggregation divides by the maximum completion length; give it (> 0)"),
            LossAggregation.Dapo => rolloutTokens > 0
                ? masked.sum() / (double)rolloutTokens
                : throw new ArgumentException("DAPO's token-level aggregation divides by the active tokens of the whole rollout batch; give them (> 0)"),
            _ => throw new ArgumentOutOfRangeException(nameof(how)),
        };
        return result.MoveToOuterDisposeScope();
    }

    static Tensor Grouped(Tensor rewards, int groupSize)
    {
        if (groupSize < 1) throw new ArgumentException($"group size must be at least 1 (got {groupSize})");
        if (rewards.shape.Length != 1 || rewards.shape[0] % groupSize != 0)
            throw new ArgumentException($"rewards of shape [{string.Join(", ", rewards.shape)}] are not whole groups of {groupSize}: give one reward per completion, each prompt's {groupSize} adjacent");
        var values = rewards.to(float64).cpu().data<double>().ToArray();
        for (var i = 0; i < values.Length; i++)
            if (!double.IsFinite(values[i]))
                throw new ArgumentException($"reward {i} (prompt {i / groupSize}, completion {i % groupSize}) is {values[i]}: a reward must be finite");
        return rewards.view(-1, groupSize);
    }
}
