using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// Per-sequence log-probability of the scored (completion) tokens: <c>Sum[b] = sum_t log p(target[b,t])</c>
/// over targets != -100, and <c>Count[b]</c> = how many were scored. Both (B), float32.
/// The inputs every preference loss reads (policy and reference alike).
/// </summary>
public sealed record SequenceLogProbs(Tensor Sum, Tensor Count) : IDisposable  // Sum, Count: (B) float32
{
    /// <summary>
    /// From logits (B, T, V) and targets (B, T) already aligned (target t is the token after input t),
    /// -100 = not scored. Computed in float32 with log_softmax + gather, whatever the logits' dtype.
    /// A row with no scored token has Sum 0 and Count 0.
    /// </summary>
    public static SequenceLogProbs Compute(Tensor logits, Tensor targets)
    {
        if (logits.dim() != 3 || targets.dim() != 2 || logits.shape[0] != targets.shape[0] || logits.shape[1] != targets.shape[1])
            throw new ArgumentException($"sequence log-probs: logits must be (B, T, V) and targets (B, T); got [{string.Join(", ", logits.shape)}] and [{string.Join(", ", targets.shape)}]");
        using var scope = NewDisposeScope();
        var scored = targets.ne(TokenLoss.IgnoreIndex);                       // (B, T) bool
        var index = targets.masked_fill(scored.logical_not(), 0).unsqueeze(-1);      // (B, T, 1) any valid id where unscored
        var logp = logits.to(float32).log_softmax(-1).gather(-1, index).squeeze(-1); // (B, T)
        return Summed(logp, scored).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The model's on inputs (B, T) and targets (B, T): from full logits, or through <see cref="ChunkedLoss"/> when
    /// <see cref="LossChunking"/> says so for its vocabulary (the same values and gradients to rounding).
    /// </summary>
    public static SequenceLogProbs Compute(CausalLM model, Tensor input, Tensor targets)
    {
        var rows = LossChunking.RowsFor(model.Config.VocabSize);
        if (rows == 0) return Compute(model.Forward(input), targets);
        using var scope = NewDisposeScope();
        var logp = ChunkedLoss.TargetLogProbs(model.Hidden(input), model.HeadWeight, targets, model.FinalLogitSoftcap, rows);   // (B, T)
        return Summed(logp, targets.ne(TokenLoss.IgnoreIndex)).MoveToOuterDisposeScope();
    }

    /// <summary>Sum and count per row of log-probs (B, T) over the scored positions (B, T).</summary>
    static SequenceLogProbs Summed(Tensor logp, Tensor scored)
    {
        var sum = logp.masked_fill(scored.logical_not(), 0).sum(1);                  // (B)  masked_fill, not *mask: -inf at a masked slot stays out
        var count = scored.sum(1).to(float32);                                       // (B)
        return new SequenceLogProbs(sum, count);
    }

    SequenceLogProbs MoveToOuterDisposeScope() => new(Sum.MoveToOuterDisposeScope(), Count.MoveToOuterDisposeScope());

    /// <summary>Average log-prob per scored token, Sum / Count (B); rows with Count 0 give 0.</summary>
    public Tensor Average() => Sum / Count.clamp_min(1);

    public void Dispose()
    {
        Sum.Dispose();
        Count.Dispose();
    }
}
