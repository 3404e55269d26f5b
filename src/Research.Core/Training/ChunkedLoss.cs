using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Training;

/// <summary>
/// Log-probabilities of the targets under the head, a chunk of rows at a time, without [rows, V] logits kept for backward.
/// With a 150k vocabulary the plain loss holds fp32 logits (B·T, V), their log-softmax for backward, and both gradients:
/// several GB at a few thousand tokens. Here the head is a custom autograd function (TorchSharp's
/// <c>autograd.SingleTensorFunction</c>) that saves only its inputs, the hidden states (N, C) and the head weight (V, C):
/// forward computes each chunk's logits, log p(target) = z[target] - logsumexp(z), and drops them; backward recomputes
/// each chunk's logits and forms the gradients analytically, dz = g · (onehot - softmax(z)) per row with g the upstream
/// gradient of that row's log-prob, grad_hidden = dz · W and grad_W += dzᵀ · h. So at most one chunk's (rows, V) logits
/// (and their softmax) exist at a time, in forward and in backward, for one extra head matmul per step.
/// Why a custom function rather than the alternatives: a surrogate loss with injected gradients only works for a scalar
/// with a fixed upstream gradient (the summed CE), not for per-token log-probs that a preference loss feeds through a
/// sigmoid; and TorchSharp has no activation checkpointing. One function serves both: CE = -Σ log p.
/// The final-logit softcap z = cap · tanh(u / cap) is supported: its derivative 1 - (z / cap)² multiplies dz.
/// Numerics: the head matmul and the softcap run in the hidden states' dtype and the softmax in fp32, as the plain path
/// does, so values agree to rounding (the logsumexp and the chunked sum of grad_W reorder additions).
/// </summary>
public static class ChunkedLoss
{
    public const long IgnoreIndex = -100;

    /// <summary>
    /// log p(target) per row: hidden (..., C), head weight (V, C), targets (...) int64 with -100 = not scored (those rows
    /// give 0 and no gradient) → (...) float32. <paramref name="chunkRows"/> rows of the flattened hidden states at a time.
    /// </summary>
    public static Tensor TargetLogProbs(Tensor hidden, Tensor weight, Tensor targets, double? softcap, int chunkRows)
    {
        if (chunkRows <= 0) throw new ArgumentException($"chunked loss: chunk rows must be > 0 (got {chunkRows})");
        if (weight.dim() != 2 || hidden.shape[^1] != weight.shape[1])
            throw new ArgumentException($"chunked loss: hidden (..., C) and weight (V, C) disagree: [{string.Join(", ", hidden.shape)}] and [{string.Join(", ", weight.shape)}]");
        if (!hidden.shape[..^1].SequenceEqual(targets.shape))
            throw new ArgumentException($"chunked loss: targets [{string.Join(", ", targets.shape)}] do not match hidden [{string.Join(", ", hidden.shape)}]");
        if (softcap is { } c && !(c > 0)) throw new ArgumentException($"chunked loss: softcap must be > 0 (got {c})");
        // Not inside a dispose scope of ours: the function's node keeps tensors of the caller's scope until backward.
        var flat = TargetLogProbFunction.apply(hidden.reshape(-1, hidden.shape[^1]), weight, targets.reshape(-1), chunkRows, softcap ?? 0.0);
        return flat.view(targets.shape);
    }

    /// <summary>Summed cross-entropy over the scored targets, -Σ log p(target): what <c>F.cross_entropy(reduction: Sum)</c> of the full logits gives.</summary>
    public static Tensor SummedCrossEntropy(Tensor hidden, Tensor weight, Tensor targets, double? softcap, int chunkRows) =>
        TargetLogProbs(hidden, weight, targets, softcap, chunkRows).sum().neg();

    /// <summary>Logits (rows, V) in fp32 of hidden rows (rows, C): the head in the inputs' dtype, the softcap, then fp32.</summary>
    internal static Tensor ChunkLogits(Tensor h, Tensor weight, double softcap)
    {
        var z = F.linear(h, weight);
        if (softcap > 0) z = (z / softcap).tanh() * softcap;
        return z.to(float32);
    }

    /// <summary>The autograd function; vars: hidden (N, C), weight (V, C), targets (N), chunk rows (int), softcap (double, 0 = none).</summary>
    sealed class TargetLogProbFunction : autograd.SingleTensorFunction<TargetLogProbFunction>
    {
        public override string Name => "ChunkedTargetLogProbs";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (h, w, targets, rows, cap) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (int)vars[3], (double)vars[4]);
            ctx.save_for_backward([h, w, targets]);
            ctx.save_data("rows", rows);
            ctx.save_data("cap", cap);
            var n = h.shape[0];
            var logp = zeros(n, dtype: float32, device: h.device);
            for (long s = 0; s < n; s += rows)
            {
                using var scope = NewDisposeScope();
                var len = Math.Min(rows, n - s);
                var z = ChunkLogits(h.narrow(0, s, len), w, cap);                                 // (len, V)
                var (scored, index) = Scored(targets.narrow(0, s, len));
                var lp = z.gather(1, index).squeeze(1) - z.logsumexp(1);                          // (len)
                logp.narrow(0, s, len).copy_(lp.masked_fill(scored.logical_not(), 0));
            }
            return logp;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var saved = ctx.get_saved_variables();
            var (h, w, targets) = (saved[0], saved[1], saved[2]);
            var (rows, cap) = ((int)ctx.get_data("rows"), (double)ctx.get_data("cap"));
            var n = h.shape[0];
            var gradH = empty_like(h);
            var gradW = zeros(w.shape, dtype: float32, device: w.device);
            for (long s = 0; s < n; s += rows)
            {
                using var chunk = NewDisposeScope();
                var len = Math.Min(rows, n - s);
                var hc = h.narrow(0, s, len);
                var z = ChunkLogits(hc, w, cap);                                                   // (len, V) fp32
                var (scored, index) = Scored(targets.narrow(0, s, len));
                var g = gradOutput.narrow(0, s, len).to(float32).masked_fill(scored.logical_not(), 0).unsqueeze(1);   // (len, 1)
                var capSlope = cap > 0 ? 1 - (z / cap).square() : null;                            // d(cap tanh(u/cap))/du
                var lse = z.logsumexp(1, keepdim: true);
                var dz = z.sub_(lse).exp_().mul_(g.neg());                                         // -g softmax(z), in place of z
                dz.scatter_add_(1, index, g);                                                      // + g onehot(target)
                if (capSlope is not null) dz.mul_(capSlope);
                var dzc = dz.to(h.dtype);
                gradH.narrow(0, s, len).copy_(dzc.matmul(w));                                      // (len, C)
                gradW.add_(dzc.t().matmul(hc));                                                    // (V, C)
            }
            var gw = gradW.to(w.dtype);
            return [gradH.MoveToOuterDisposeScope(), gw.MoveToOuterDisposeScope(), null!, null!, null!];
        }

        /// <summary>Which rows are scored (len) and a valid index for every row (len, 1): 0 where not scored.</summary>
        static (Tensor Scored, Tensor Index) Scored(Tensor targets)
        {
            var scored = targets.ne(IgnoreIndex);
            return (scored, targets.masked_fill(scored.logical_not(), 0).unsqueeze(1));
        }
    }
}
