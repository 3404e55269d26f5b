using Research.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages;

// Notation (shapes in comments, one entry per pair or example):
//   dc = log pi(yc) - log pi_ref(yc), dr = log pi(yr) - log pi_ref(yr)   (B), sums over completion tokens
//   h  = dc - dr                                                          (B)
//   |y| = completion tokens of y; sigma = logistic; log sigma computed as logsigmoid (stable).
// Every function returns per-pair (or per-example) losses (B); the objective sums them and the
// Trainer divides by the pairs of all accumulated micro-batches (IBatch.Normalizer = pairs).

/// <summary>Pairwise losses on policy-vs-reference log-ratios (TRL DPOTrainer loss_type names).</summary>
public enum PreferenceLoss
{
    /// <summary>DPO: -(1-eps) log sigma(beta h) - eps log sigma(-beta h). eps = 0 is plain DPO; eps &gt; 0 is the label-smoothed (conservative, cDPO) loss, as TRL's "sigmoid".</summary>
    Sigmoid,
    /// <summary>Robust DPO (TRL "robust"): [-(1-eps) log sigma(beta h) + eps log sigma(-beta h)] / (1 - 2 eps).</summary>
    Robust,
    /// <summary>SLiC hinge: max(0, 1 - beta h).</summary>
    Hinge,
    /// <summary>IPO: (dc/|yc| - dr/|yr| - 1/(2 beta))^2, on length-averaged log-ratios (as TRL's "ipo").</summary>
    Ipo,
    /// <summary>LN-DPO (TRL "sigmoid_norm"): -log sigma(beta (dc/|yc| - dr/|yr|)).</summary>
    SigmoidNorm,
    /// <summary>SPPO hard labels: (dc - 1/(2 beta))^2 + (dr + 1/(2 beta))^2.</summary>
    SppoHard,
    /// <summary>APO-zero: 1 - sigma(beta dc) + sigma(beta dr).</summary>
    ApoZero,
    /// <summary>NCA pairwise: -log sigma(beta dc) - 0.5 log sigma(-beta dc) - 0.5 log sigma(-beta dr).</summary>
    NcaPair,
    /// <summary>BCO pairwise without TRL's running reward mean: -log sigma(beta dc) - log sigma(-beta dr).</summary>
    BcoPair,
}

/// <summary>One term of a weighted combination of pairwise losses (TRL loss_type list + loss_weights).</summary>
public sealed record WeightedPreferenceLoss(PreferenceLoss Kind, double Weight = 1.0);

/// <summary>Options shared by the preference losses. Defaults follow TRL.</summary>
public sealed partial record PreferenceOptions
{
    /// <summary>Strength of the KL leash (DPO beta); 0.1 as in TRL and the DPO paper's dialogue runs.</summary>
    public double Beta { get; init; } = 0.1;
    /// <summary>Label-smoothing eps for Sigmoid / Robust / SimPO: the assumed share of flipped labels; 0 = trust the labels.</summary>
    public double LabelSmoothing { get; init; } = 0.0;
    /// <summary>Pairwise terms and their weights, summed; plain DPO by default.</summary>
    public IReadOnlyList<WeightedPreferenceLoss> Losses { get; init; } = [new(PreferenceLoss.Sigmoid)];
    /// <summary>RPO weight of the chosen completion's per-token NLL added to each pair; 0 = off (the RPO paper uses 1).</summary>
    public double SftWeight { get; init; } = 0.0;
    /// <summary>SimPO target margin gamma (TRL simpo_gamma 0.5).</summary>
    public double SimpoGamma { get; init; } = 0.5;
    /// <summary>ORPO lambda weighting the odds-ratio term against the NLL (the ORPO paper and TRL use 0.1).</summary>
    public double OrpoLambda { get; init; } = 0.1;
    /// <summary>KTO weight of desirable examples (TRL 1.0).</summary>
    public double DesirableWeight { get; init; } = 1.0;
    /// <summary>KTO weight of undesirable examples (TRL 1.0).</summary>
    public double UndesirableWeight { get; init; } = 1.0;

    public void Validate()
    {
        if (!(Beta > 0)) throw new ArgumentException($"preference: beta must be > 0 (got {Beta})");
        if (LabelSmoothing is < 0 or >= 0.5) throw new ArgumentException($"preference: label_smoothing must be in [0, 0.5) (got {LabelSmoothing})");
        if (Losses.Count == 0) throw new ArgumentException("preference: at least one loss is needed");
        if (SftWeight < 0 || OrpoLambda < 0 || DesirableWeight < 0 || UndesirableWeight < 0)
            throw new ArgumentException("preference: sft_weight, orpo_lambda and the KTO weights must be >= 0");
    }
}

/// <summary>Per-pair losses (B) with the rewards behind them (B, detached) and extra scalar diagnostics.</summary>
public sealed record PreferenceResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards, IReadOnlyDictionary<string, Tensor> Extra)
{
    /// <summary>Batch means: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracy (share with chosen reward &gt; rejected, i.e. h &gt; 0), plus extras.</summary>
    public Dictionary<string, Tensor> Metrics()
    {
        using var _ = no_grad();
        var m = new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = ChosenRewards.mean(),
            ["rewards/rejected"] = RejectedRewards.mean(),
            ["rewards/margins"] = (ChosenRewards - RejectedRewards).mean(),
            ["rewards/accuracy"] = ChosenRewards.gt(RejectedRewards).to(float32).mean(),
        };
        foreach (var (k, v) in Extra) m[k] = v;
        return m;
    }

    /// <summary>Adds <see cref="Metrics"/> to the sink.</summary>
    public void Report(MetricSink sink)
    {
        foreach (var (k, v) in Metrics()) sink.Add(k, v);
    }
}

/// <summary>KTO per-example losses (B, weighted), rewards beta d (B, detached), the detached z0 and the desirable mask.</summary>
public sealed record KtoResult(Tensor Losses, Tensor Rewards, Tensor Z0, Tensor Desirable)
{
    /// <summary>rewards/chosen and rewards/rejected are means over the desirable / undesirable examples (0 when none), plus kl = z0.</summary>
    public Dictionary<string, Tensor> Metrics()
    {
        using var _ = no_grad();
        var d = Desirable.to(float32);
        var u = 1 - d;
        var chosen = (Rewards * d).sum() / d.sum().clamp_min(1);
        var rejected = (Rewards * u).sum() / u.sum().clamp_min(1);
        return new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = chosen,
            ["rewards/rejected"] = rejected,
            ["rewards/margins"] = chosen - rejected,
            ["kl"] = Z0,
        };
    }

    public void Report(MetricSink sink)
    {
        foreach (var (k, v) in Metrics()) sink.Add(k, v);
    }
}

/// <summary>The align losses as pure functions of log-probs; see the notation at the top of the file.</summary>
public static class PreferenceLosses
{
    static Tensor NegLogSigmoid(Tensor x) => -F.logsigmoid(x);

    /// <summary>DPO / conservative DPO: -(1-eps) log sigma(beta h) - eps log sigma(-beta h). h: (B) → (B).</summary>
    public static Tensor Sigmoid(Tensor h, double beta, double eps = 0.0) =>
        eps == 0 ? NegLogSigmoid(beta * h) : (1 - eps) * NegLogSigmoid(beta * h) + eps * NegLogSigmoid(-beta * h);

    /// <summary>Robust DPO (Chowdhury et al. 2024, TRL "robust"): [-(1-eps) log sigma(beta h) + eps log sigma(-beta h)] / (1 - 2 eps). h: (B) → (B).</summary>
    public static Tensor Robust(Tensor h, double beta, double eps) =>
        ((1 - eps) * NegLogSigmoid(beta * h) - eps * NegLogSigmoid(-beta * h)) / (1 - 2 * eps);

    /// <summary>Hinge: max(0, 1 - beta h). h: (B) → (B).</summary>
    public static Tensor Hinge(Tensor h, double beta) => (1 - beta * h).relu();

    /// <summary>IPO: (dcAvg - drAvg - 1/(2 beta))^2 with length-averaged log-ratios dc/|yc|, dr/|yr|: (B) → (B).</summary>
    public static Tensor Ipo(Tensor dcAvg, Tensor drAvg, double beta) => (dcAvg - drAvg - 1 / (2 * beta)).square();

    /// <summary>LN-DPO: -log sigma(beta (dcAvg - drAvg)), length-averaged log-ratios (B) → (B).</summary>
    public static Tensor SigmoidNorm(Tensor dcAvg, Tensor drAvg, double beta) => NegLogSigmoid(beta * (dcAvg - drAvg));

    /// <summary>SPPO (hard labels): (dc - 1/(2 beta))^2 + (dr + 1/(2 beta))^2. dc, dr: (B) → (B).</summary>
    public static Tensor SppoHard(Tensor dc, Tensor dr, double beta) =>
        (dc - 0.5 / beta).square() + (dr + 0.5 / beta).square();

    /// <summary>APO-zero (D'Oosterlinck et al. 2024): 1 - sigma(beta dc) + sigma(beta dr). (B) → (B).</summary>
    public static Tensor ApoZero(Tensor dc, Tensor dr, double beta) => 1 - (beta * dc).sigmoid() + (beta * dr).sigmoid();

    /// <summary>NCA pairwise (Chen et al. 2024): -log sigma(beta dc) - 0.5 log sigma(-beta dc) - 0.5 log sigma(-beta dr). (B) → (B).</summary>
    public static Tensor NcaPair(Tensor dc, Tensor dr, double beta) =>
        NegLogSigmoid(beta * dc) + 0.5 * NegLogSigmoid(-beta * dc) + 0.5 * NegLogSigmoid(-beta * dr);

    /// <summary>
    /// BCO pairwise as in anchors.md: -log sigma(beta dc) - log sigma(-beta dr). (B) → (B).
    /// TRL's bco_pair subtracts a running mean delta of the batch rewards (detached, updated every step):
    /// -log sigma(beta dc - delta) - log sigma(-(beta dr - delta)). That makes the loss depend on training
    /// history (and on how batches fall), so here delta = 0; the two agree when the rewards' running mean is 0.
    /// </summary>
    public static Tensor BcoPair(Tensor dc, Tensor dr, double beta) => NegLogSigmoid(beta * dc) + NegLogSigmoid(-beta * dr);

    /// <summary>RPO's SFT term: NLL of the chosen completion per token, -Sum/Count. → (B).</summary>
    public static Tensor Sft(SequenceLogProbs chosen) => -chosen.Average();

    /// <summary>One pairwise loss from summed log-ratios dc, dr (B) and completion lengths lc, lr (B, float).</summary>
    public static Tensor PerPair(PreferenceLoss kind, Tensor dc, Tensor dr, Tensor lc, Tensor lr, double beta, double eps = 0.0) => kind switch
    {
        PreferenceLoss.Sigmoid => Sigmoid(dc - dr, beta, eps),
        PreferenceLoss.Robust => Robust(dc - dr, beta, eps),
        PreferenceLoss.Hinge => Hinge(dc - dr, beta),
        PreferenceLoss.Ipo => Ipo(dc / lc.clamp_min(1), dr / lr.clamp_min(1), beta),
        PreferenceLoss.SigmoidNorm => SigmoidNorm(dc / lc.clamp_min(1), dr / lr.clamp_min(1), beta),
        PreferenceLoss.SppoHard => SppoHard(dc, dr, beta),
        PreferenceLoss.ApoZero => ApoZero(dc, dr, beta),
        PreferenceLoss.NcaPair => NcaPair(dc, dr, beta),
        PreferenceLoss.BcoPair => BcoPair(dc, dr, beta),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown preference loss"),
    };

    /// <summary>
    /// The reference-based pairwise objective: sum_i w_i loss_i(dc, dr) + sft_weight * NLL(chosen)/|yc| per pair.
    /// Policy log-probs carry gradients; reference log-probs (B) may be precomputed once (no reference model in memory).
    /// Rewards: beta dc and beta dr.
    /// </summary>
    public static PreferenceResult Pairs(SequenceLogProbs chosen, SequenceLogProbs rejected, Tensor refChosen, Tensor refRejected, PreferenceOptions options)
    {
        options.Validate();
        var dc = chosen.Sum - refChosen.detach();        // (B)
        var dr = rejected.Sum - refRejected.detach();    // (B)
        Tensor? losses = null;
        foreach (var term in options.Losses)
        {
            var l = term.Weight * PerPair(term.Kind, dc, dr, chosen.Count, rejected.Count, options.Beta, options.LabelSmoothing);
            losses = losses is null ? l : losses + l;
        }
        var extra = new Dictionary<string, Tensor>();
        using (no_grad())
        {
            extra["logps/chosen"] = chosen.Sum.mean();
            extra["logps/rejected"] = rejected.Sum.mean();
        }
        if (options.SftWeight > 0)
        {
            var sft = Sft(chosen);
            losses = losses! + options.SftWeight * sft;
            extra["nll/chosen"] = sft.detach().mean();
        }
        using var _ = no_grad();
        return new PreferenceResult(losses!, options.Beta * dc.detach(), options.Beta * dr.detach(), extra);
    }

    /// <summary>
    /// SimPO (Meng et al. 2024), reference-free: -(1-eps) log sigma(beta (ac - ar) - gamma) - eps log sigma(-(beta (ac - ar) - gamma))
    /// with ac, ar the average log-prob per completion token (B). Rewards: beta ac, beta ar.
    /// The SimPO paper tunes beta around 2-2.5 (TRL CPO's default beta 0.1 is used here unless set).
    /// </summary>
    public static PreferenceResult SimPO(SequenceLogProbs chosen, SequenceLogProbs rejected, PreferenceOptions options)
    {
        options.Validate();
        var ac = chosen.Average();                                         // (B)
        var ar = rejected.Average();                                       // (B)
        var z = options.Beta * (ac - ar) - options.SimpoGamma;             // (B)
        var eps = options.LabelSmoothing;
        var losses = eps == 0 ? NegLogSigmoid(z) : (1 - eps) * NegLogSigmoid(z) + eps * NegLogSigmoid(-z);
        using var _ = no_grad();
        return new PreferenceResult(losses, options.Beta * ac.detach(), options.Beta * ar.detach(), new Dictionary<string, Tensor>());
    }

    /// <summary>log(1 - exp(x)) for x &lt; 0, stable at both ends (Maechler 2012): log(-expm1(x)) near 0, log1p(-exp(x)) below -ln 2.</summary>
    public static Tensor Log1mExp(Tensor x) => where(x.gt(-Math.Log(2)), (-x.expm1()).log(), (-x.exp()).log1p());

    /// <summary>
    /// ORPO (Hong et al. 2024), reference-free: NLL_c - lambda log sigma(log odds_c - log odds_r) per pair, where
    /// p = exp(a) with a the average log-prob per completion token, log odds = a - log(1 - exp(a)) (via <see cref="Log1mExp"/>),
    /// NLL_c = -a_c. Infinite when a completion has probability exactly 1 (a = 0). Rewards: lambda a_c, lambda a_r (TRL).
    /// </summary>
    public static PreferenceResult Orpo(SequenceLogProbs chosen, SequenceLogProbs rejected, PreferenceOptions options)
    {
        options.Validate();
        var ac = chosen.Average();                                                   // (B)
        var ar = rejected.Average();                                                 // (B)
        var logOdds = (ac - ar) - (Log1mExp(ac) - Log1mExp(ar));                     // (B)
        var ratio = F.logsigmoid(logOdds);                                           // (B)
        var losses = -ac - options.OrpoLambda * ratio;                               // (B)
        using var _ = no_grad();
        var extra = new Dictionary<string, Tensor>
        {
            ["log_odds_ratio"] = ratio.mean(),
            ["log_odds_chosen"] = logOdds.mean(),
            ["nll/chosen"] = (-ac).mean(),
        };
        return new PreferenceResult(losses, options.OrpoLambda * ac.detach(), options.OrpoLambda * ar.detach(), extra);
    }

    /// <summary>
    /// KTO (Ethayarajh et al. 2024), unpaired. policy, reference: summed log-probs of each example's completion (B);
    /// desirable: (B) bool. klPolicy, klReference: log-probs (B') of completions paired with mismatched prompts
    /// (TRL's KL dataset), or null for z0 = 0.
    /// z0 = max(0, mean(klPolicy - klReference)), DETACHED (no gradient reaches the KL inputs);
    /// d = policy - reference; desirable: w_D (1 - sigma(beta (d - z0))), undesirable: w_U (1 - sigma(beta (z0 - d))).
    /// </summary>
    public static KtoResult Kto(Tensor policy, Tensor reference, Tensor desirable, Tensor? klPolicy, Tensor? klReference, PreferenceOptions options)
    {
        options.Validate();
        if ((klPolicy is null) != (klReference is null)) throw new ArgumentException("kto: give both KL log-probs (policy and reference) or neither");
        Tensor z0;
        using (no_grad())
            z0 = klPolicy is null ? zeros(1, dtype: float32, device: policy.device).squeeze() : (klPolicy.detach() - klReference!.detach()).mean().clamp_min(0);
        var d = policy - reference.detach();                                                     // (B)
        var good = options.DesirableWeight * (1 - (options.Beta * (d - z0)).sigmoid());          // (B)
        var bad = options.UndesirableWeight * (1 - (options.Beta * (z0 - d)).sigmoid());         // (B)
        var losses = where(desirable, good, bad);                                                // (B)
        using var _ = no_grad();
        return new KtoResult(losses, options.Beta * d.detach(), z0, desirable);
    }

    /// <summary>
    /// Point-wise DPO (Cai et al. 2023, "ULMA", arXiv:2312.02554, Sec. 3): each example has a label y in [0, 1]
    /// (binary good/bad or a continuous score) and d = log pi(y|x) - log pi_ref(y|x) (B); the implicit reward
    /// beta d is fitted as a logit by binary cross-entropy: -y log sigma(beta d) - (1-y) log sigma(-beta d), (B).
    /// The paper's log-partition term beta log Z(x) is taken as 0 (as in its experiments). ULMA proper replaces the
    /// positive term by plain SFT on demonstrations; that is the SFT stage plus this loss on negatives.
    /// </summary>
    public static Tensor Pointwise(Tensor d, Tensor label, double beta)
    {
        var z = beta * d;                                                                        // (B)
        return label * NegLogSigmoid(z) + (1 - label) * NegLogSigmoid(-z);
    }
}
