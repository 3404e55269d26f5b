using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages.Uda;

/// <summary>
/// The losses of classic unsupervised domain adaptation, as pure functions of tensors (formulas and papers in
/// docs/methods/uda.md). Features are the pooled hidden states the classification head reads: source (n, d), target (m, d).
/// Each returns a scalar mean (the stage scales it to the loop's summed convention) unless it says otherwise.
/// </summary>
public static class UdaLosses
{
    /// <summary>
    /// The gradient reversal layer (Ganin and Lempitsky 2015): the identity forward, the gradient times -lambda backward.
    /// Written as x.detach() + lambda'(x - x.detach()) with lambda' = -lambda, whose value is exactly x.
    /// </summary>
    public static Tensor GradientReversal(Tensor x, double lambda)
    {
        using var scope = NewDisposeScope();
        var fixedPart = x.detach();
        return (fixedPart + (x - fixedPart) * -lambda).MoveToOuterDisposeScope();
    }

    /// <summary>DANN's schedule of the reversal strength over training progress p in [0, 1]: 2 / (1 + exp(-gamma p)) - 1 (gamma 10).</summary>
    public static double DannLambda(double progress, double gamma = 10.0)
    {
        if (!(progress is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(progress), $"training progress must be in [0, 1] (got {progress})");
        return 2.0 / (1.0 + Math.Exp(-gamma * progress)) - 1.0;
    }

    /// <summary>The domain discriminator's loss: binary cross-entropy of its logits, source labelled 0 and target 1, averaged over both (n + m).</summary>
    /// <param name="source">(n) logits of source features.</param>
    /// <param name="target">(m) logits of target features.</param>
    public static Tensor DomainLoss(Tensor source, Tensor target)
    {
        using var scope = NewDisposeScope();
        var logits = cat([source, target]);
        var labels = cat([zeros_like(source), ones_like(target)]);
        return F.binary_cross_entropy_with_logits(logits, labels, reduction: nn.Reduction.Mean).MoveToOuterDisposeScope();
    }

    /// <summary>Unbiased covariance (d, d) of rows (n, d): (XᵀX - (1ᵀX)ᵀ(1ᵀX) / n) / (n - 1).</summary>
    public static Tensor Covariance(Tensor x)
    {
        var n = x.shape[0];
        if (n < 2) throw new ArgumentException($"covariance needs at least 2 rows (got {n}); use a batch of 2 or more");
        using var scope = NewDisposeScope();
        var sum = x.sum(0, keepdim: true);                                                          // (1, d)
        return ((x.t().matmul(x) - sum.t().matmul(sum) / n) / (n - 1)).MoveToOuterDisposeScope();
    }

    /// <summary>Deep CORAL (Sun and Saenko 2016): ‖C_S - C_T‖²_F / (4 d²), C the feature covariances.</summary>
    public static Tensor Coral(Tensor source, Tensor target)
    {
        var d = source.shape[1];
        using var scope = NewDisposeScope();
        var diff = Covariance(source) - Covariance(target);
        return ((diff * diff).sum() / (4.0 * d * d)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The bandwidth scale of the Gaussian kernels: the mean squared distance between distinct rows of the joint sample
    /// (detached: the bandwidth is not learned), as DAN's implementations set it.
    /// </summary>
    public static double MeanSquaredDistance(Tensor source, Tensor target)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var all = cat([source, target]).to(float64);
        var n = all.shape[0];
        var d2 = cdist(all, all).pow(2);
        return d2.sum().item<double>() / (n * (n - 1));
    }

    /// <summary>
    /// Multi-kernel MMD² (Long et al. 2015, DAN), the biased (V-statistic) estimate with equal kernel weights:
    /// mean K(S,S) + mean K(T,T) - 2 mean K(S,T), K(x, y) = (1/U) Σ_u exp(-‖x - y‖² / gamma_u).
    /// </summary>
    /// <param name="gammas">The kernels' bandwidths gamma_u (squared-distance units), e.g. base · {1/4, 1/2, 1, 2, 4}.</param>
    public static Tensor MultiKernelMmd(Tensor source, Tensor target, IReadOnlyList<double> gammas)
    {
        if (gammas.Count == 0 || gammas.Any(g => !(g > 0))) throw new ArgumentException($"MMD: every kernel bandwidth must be > 0 (got [{string.Join(", ", gammas)}])");
        using var scope = NewDisposeScope();
        Tensor K(Tensor a, Tensor b)
        {
            var d2 = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1);                              // (n, m)
            return stack(gammas.Select(g => (d2 / -g).exp()).ToArray()).mean([0L]);                  // (n, m)
        }
        return (K(source, source).mean() + K(target, target).mean() - 2 * K(source, target).mean()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// M3SDA's moment distance (Peng et al. 2019) between N sources and the target, for moments k = 1 .. K of each feature
    /// (E[x^k] elementwise): Σ_k [ (1/N) Σ_i ‖E(X_i^k) - E(X_T^k)‖₂ + (1/C(N,2)) Σ_{i&lt;j} ‖E(X_i^k) - E(X_j^k)‖₂ ]
    /// (the second term only with two sources or more).
    /// </summary>
    public static Tensor MomentDistance(IReadOnlyList<Tensor> sources, Tensor target, int order)
    {
        if (sources.Count == 0) throw new ArgumentException("moment distance: needs at least one source");
        if (order < 1) throw new ArgumentException($"moment distance: order must be at least 1 (got {order})");
        using var scope = NewDisposeScope();
        var total = zeros(1, dtype: target.dtype, device: target.device).squeeze();
        for (var k = 1; k <= order; k++)
        {
            var mt = target.pow(k).mean([0L]);
            var ms = sources.Select(s => s.pow(k).mean([0L])).ToArray();
            total = total + stack(ms.Select(m => (m - mt).norm()).ToArray()).mean();
            if (ms.Length > 1)
            {
                var pairs = new List<Tensor>();
                for (var i = 0; i < ms.Length; i++)
                    for (var j = i + 1; j < ms.Length; j++) pairs.Add((ms[i] - ms[j]).norm());
                total = total + stack(pairs.ToArray()).mean();
            }
        }
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>Shannon entropy -Σ p log p of each row's softmax (B, C) → (B), in nats (TENT's objective).</summary>
    public static Tensor Entropy(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var logp = logits.log_softmax(-1);
        return (-(logp.exp() * logp).sum(-1)).MoveToOuterDisposeScope();
    }

    /// <summary>Hard pseudo-labels of probabilities (B, C) and the mask (B, float) of rows whose top probability reaches the threshold.</summary>
    /// <param name="threshold">A number, or a tensor of shape () or (B) (AdaMatch's relative threshold).</param>
    public static (Tensor Labels, Tensor Mask) PseudoLabels(Tensor probs, Tensor threshold)
    {
        using var scope = NewDisposeScope();
        var (top, labels) = probs.max(-1);
        var mask = top.ge(threshold).to(probs.dtype);
        return (labels.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    /// <summary>Summed masked cross-entropy Σ_b mask_b CE(logits_b, labels_b) (FixMatch's unlabelled term before dividing by the batch).</summary>
    public static Tensor MaskedCrossEntropy(Tensor logits, Tensor labels, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var ce = F.cross_entropy(logits, labels, reduction: nn.Reduction.None);
        return (ce * mask).sum().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// AdaMatch's distribution alignment: target probabilities (m, C) times the ratio of the source's mean prediction to the
    /// target's, each row renormalised to sum to 1.
    /// </summary>
    public static Tensor DistributionAlignment(Tensor targetProbs, Tensor sourceProbs)
    {
        using var scope = NewDisposeScope();
        var scaled = targetProbs * (sourceProbs.mean([0L]) / targetProbs.mean([0L]));
        return (scaled / scaled.sum(-1, keepdim: true)).MoveToOuterDisposeScope();
    }

    /// <summary>AdaMatch's relative confidence threshold: tau times the mean top probability on the (weakly augmented) source batch.</summary>
    public static Tensor RelativeThreshold(Tensor sourceProbs, double tau)
    {
        using var scope = NewDisposeScope();
        return (sourceProbs.max(-1).values.mean() * tau).MoveToOuterDisposeScope();
    }

    /// <summary>AdaMatch's warm-up of the unlabelled weight: 1/2 - cos(min(π, 2π · step / steps)) / 2, from 0 to 1 at half of training.</summary>
    public static double AdaMatchWarmup(long step, long steps)
    {
        if (steps <= 0) throw new ArgumentOutOfRangeException(nameof(steps), $"steps must be > 0 (got {steps})");
        return 0.5 - Math.Cos(Math.Min(Math.PI, 2 * Math.PI * step / steps)) / 2;
    }
}
