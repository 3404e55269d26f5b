using Research.Data;
using Research.Selection;
using Research.Models;
using Research.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages;

/// <summary>
/// DoReMi options. <see cref="StepSize"/> η of the exponentiated-gradient update and <see cref="Smoothing"/> c (mixing
/// with uniform) default to the paper's 1 and 1e-3. The proxy has the reference model's architecture unless
/// <see cref="Proxy"/> is given (then it must share the reference's vocabulary).
/// </summary>
public sealed partial record DoReMiOptions
{
    public double StepSize { get; init; } = 1.0;
    public double Smoothing { get; init; } = 1e-3;
    public int BlockLength { get; init; } = 128;
    /// <summary>The proxy's architecture; null = the reference's.</summary>
    public ModelConfig? Proxy { get; init; }
    /// <summary>Batch size should be a multiple of the number of domains, so every domain is in every batch (sampling is uniform over domains).</summary>
    public TrainConfig Train { get; init; } = new() { Steps = 200, LearningRate = 1e-3, WarmupSteps = 10, EvalEvery = 200, CheckpointEvery = 200 };
}

/// <summary>Sequences of several domains: inputs and targets (B, T) int64, Domain (B) int64 = each sequence's domain.</summary>
public sealed record DomainLmBatch(Tensor Input, Tensor Target, Tensor Domain, long Normalizer, long Tokens) : IBatch
{
    public void Dispose()
    {
        Input.Dispose();
        Target.Dispose();
        Domain.Dispose();
    }
}

/// <summary>
/// The DoReMi proxy objective ("DoReMi: Optimizing Data Mixtures Speeds Up Language Model Pretraining", Xie et al. 2023,
/// Algorithm 1), Group DRO over domains against a fixed reference model trained on uniform weights (same size and steps
/// as the proxy). A batch is drawn uniformly over the k domains. With ℓ_θ and ℓ_ref the per-token losses of proxy and
/// reference, the per-domain excess loss is
/// λ_i = Σ_{tokens of domain i} max(ℓ_θ − ℓ_ref, 0) / (tokens of domain i)
/// (a domain absent from the batch keeps its last λ); the domain weights move by exponentiated gradient,
/// α' = α·exp(η λ), then α = (1 − c)·α'/Σα' + c/k; the proxy then takes an optimizer step on
/// L(θ, α) = Σ_i α_i · mean_{tokens of domain i} ℓ_θ (the reference's term is constant in θ and is left out).
/// The result is the mean of α over all updates (<see cref="AverageWeights"/>). The weights live on the device
/// (no host read per step), are updated once per micro-batch, and are saved in resumable checkpoints
/// (<see cref="IStatefulObjective"/>), so an interrupted run resumes with the same weights.
/// </summary>
public sealed class DoReMiObjective : IObjective<DomainLmBatch>, IStatefulObjective, IDisposable
{
    readonly CausalLM _reference;
    readonly TokenBlocks[] _domains;
    readonly string[] _names;
    readonly Mixture _uniform;
    readonly DoReMiOptions _options;
    readonly Tensor _alpha, _alphaSum, _lambda, _updates;   // (k), (k), (k) last excess per domain, (1) number of updates

    public DoReMiObjective(CausalLM reference, IReadOnlyList<TokenBlocks> domains, IReadOnlyList<string> names, DoReMiOptions options, int seed, string fingerprint)
    {
        if (domains.Count < 2) throw new ArgumentException($"doremi: needs at least two domains (got {domains.Count})");
        _reference = reference;
        _reference.eval();
        _domains = domains.ToArray();
        _names = names.ToArray();
        _options = options;
        _uniform = new Mixture(_domains.Select((d, i) => new MixtureSource(_names[i], d, 1.0 / _domains.Length)).ToArray(), seed);
        var device = reference.EmbeddingWeight.device;
        _alpha = full(_domains.Length, 1.0 / _domains.Length, dtype: float64, device: device).DetachFromDisposeScope();
        _alphaSum = zeros(_domains.Length, dtype: float64, device: device).DetachFromDisposeScope();
        _lambda = zeros(_domains.Length, dtype: float64, device: device).DetachFromDisposeScope();
        _updates = zeros(1, dtype: float64, device: device).DetachFromDisposeScope();
        Fingerprint = $"{fingerprint}|doremi|eta={options.StepSize:R}|c={options.Smoothing:R}|block={options.BlockLength}";
    }

    public string Kind => "doremi";
    public string Fingerprint { get; }
    public IReadOnlyList<string> Domains => _names;

    /// <summary>The weights after the last update.</summary>
    public DomainWeights CurrentWeights => DomainWeights.Static(_names, _alpha.cpu().data<double>().ToArray());

    /// <summary>The mean of the weights over all updates so far (what DoReMi outputs).</summary>
    public DomainWeights AverageWeights
    {
        get
        {
            var n = _updates.item<double>();
            return n == 0 ? DomainWeights.Uniform(_names) : DomainWeights.Static(_names, _alphaSum.cpu().data<double>().Select(x => x / n).ToArray());
        }
    }

    public DomainLmBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var blocks = new int[config.BatchSize][];
        var domain = new long[config.BatchSize];
        for (var i = 0; i < config.BatchSize; i++)
        {
            var (s, b) = _uniform.Sample(first + i);
            blocks[i] = _domains[s].Block(b).ToArray();
            domain[i] = s;
        }
        var lm = LanguageModeling.FromBlocks(blocks, device);
        return new DomainLmBatch(lm.Input, lm.Target, tensor(domain, dtype: int64, device: device), lm.Normalizer, lm.Tokens);
    }

    /// <summary>Per-token cross-entropy (B, T) of a model on a batch.</summary>
    static Tensor TokenLosses(CausalLM model, Tensor input, Tensor target)
    {
        var logits = model.Forward(input);                                              // (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(float32), target.reshape(-1), reduction: nn.Reduction.None)
            .view(target.shape[0], target.shape[1]);                                    // (B, T)
    }

    /// <summary>Per-domain mean clipped excess loss λ (k) from per-token losses (B, T) and domain ids (B); also returns the token counts (k).
    /// A domain with no token in the batch gets λ = 0 here (the objective keeps its previous λ instead).</summary>
    public static (Tensor Lambda, Tensor Tokens) ExcessByDomain(Tensor proxyLoss, Tensor referenceLoss, Tensor domain, int domains)
    {
        var excess = (proxyLoss - referenceLoss).clamp_min(0).sum(dim: 1).to(float64);          // (B)
        var onehot = F.one_hot(domain, domains).to(float64);                              // (B, k)
        var tokens = onehot.sum(dim: 0) * proxyLoss.shape[1];                                 // (k)
        var perDomain = onehot.t().matmul(excess);                                        // (k)
        return (perDomain / tokens.clamp_min(1), tokens);
    }

    /// <summary>One exponentiated-gradient step with smoothing: α' = α·exp(η λ); α = (1 − c)·α'/Σα' + c/k.</summary>
    public static Tensor UpdateWeights(Tensor alpha, Tensor lambda, double stepSize, double smoothing)
    {
        var logits = alpha.log() + stepSize * lambda;
        var normalised = logits.softmax(dim: 0);
        return normalised * (1 - smoothing) + smoothing / alpha.shape[0];
    }

    public Tensor Loss(CausalLM model, DomainLmBatch batch, MetricSink metrics)
    {
        var proxy = TokenLosses(model, batch.Input, batch.Target);                         // (B, T)
        Tensor reference;
        using (no_grad()) reference = TokenLosses(_reference, batch.Input, batch.Target);
        var onehot = F.one_hot(batch.Domain, _domains.Length).to(float64);                 // (B, k)
        using (no_grad())
        {
            var (lambda, tokens) = ExcessByDomain(proxy.detach(), reference, batch.Domain, _domains.Length); // (k)
            _lambda.copy_(where(tokens > 0, lambda, _lambda));                            // absent domains keep their last λ
            using var next = UpdateWeights(_alpha, _lambda, _options.StepSize, _options.Smoothing);
            _alpha.copy_(next);
            _alphaSum.add_(_alpha);
            _updates.add_(1);
            for (var i = 0; i < _names.Length; i++) metrics.Add($"weight_{_names[i]}", _alpha[i]);
            for (var i = 0; i < _names.Length; i++) metrics.Add($"excess_{_names[i]}", _lambda[i]);
        }
        // L(θ, α) = Σ_i α_i · (Σ_{tokens of i} ℓ_θ) / tokens_i, with the weights just updated; a per-token mean, and the
        // loop divides by the batch's tokens, so return it times the tokens.
        var perDomain = onehot.t().matmul(proxy.sum(dim: 1).to(float64));                 // (k)
        var counts = onehot.sum(dim: 0) * proxy.shape[1];                                  // (k)
        return (_alpha.detach() * perDomain / counts.clamp_min(1)).sum().to(float32) * batch.Normalizer;
    }

    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
    [
        new("alpha", _alpha), new("alpha_sum", _alphaSum), new("excess", _lambda), new("updates", _updates),
    ];

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var noGrad = no_grad();
        foreach (var (name, target) in StateTensors())
        {
            if (!state.TryGetValue(name, out var t))
                throw new InvalidDataException($"{source}: the DoReMi state has no '{name}'");
            if (!t.shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{source}: DoReMi state '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", target.shape)}] (one per domain)");
            target.copy_(t.to(target.dtype).to(target.device));
        }
    }

    public void Dispose()
    {
        _alpha.Dispose();
        _alphaSum.Dispose();
        _lambda.Dispose();
        _updates.Dispose();
    }
}

/// <summary>
/// doremi stage: parent 0 is the reference model (trained on uniform weights); every data input is a domain.
/// Trains a fresh proxy with <see cref="DoReMiObjective"/>, leaves it in final/ and the averaged weights in
/// final/domain_weights.json, which an adapt stage reads (DomainMixtureOptions.WeightsFromParent).
/// The paper trains the reference and the proxy at the same size for the same steps: give the reference stage the
/// doremi stage's steps. The weights are saved in the trainer's checkpoints, so an interrupted run resumes exactly.
/// </summary>
public sealed class DoReMiExecutor : IStageExecutor
{
    public string Kind => "doremi";
    public Type Options => typeof(DoReMiOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = (DoReMiOptions)config;
        if (ctx.Data.Count < 2) throw new ArgumentException($"stage '{ctx.Name}': doremi needs at least two domain corpora as data inputs (got {ctx.Data.Count})");
        var (reference, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (reference)
        {
            var seed = (int)ctx.Seed;
            var blocks = ctx.Data.Select(c => Packing.Pack(c, tokenizer, o.BlockLength)).ToArray();
            var names = ctx.Data.Select(c => c.Name).ToArray();
            if (names.Distinct().Count() != names.Length) throw new ArgumentException($"stage '{ctx.Name}': doremi domains need distinct names (got {string.Join(", ", names)})");
            var proxyConfig = (o.Proxy ?? reference.Config) with { VocabSize = reference.Config.VocabSize, MaxPositionEmbeddings = Math.Max((o.Proxy ?? reference.Config).MaxPositionEmbeddings, o.BlockLength) };
            using var proxy = new CausalLM(proxyConfig, ctx.Seed);
            proxy.to(ctx.Device);
            var train = o.Train with { Seed = ctx.Seed };
            using var objective = new DoReMiObjective(reference, blocks, names, o, seed, string.Join(",", ctx.Data.Select(c => c.Fingerprint)));
            var result = Trainer.Run(proxy, tokenizer, objective, train, ctx.Directory, log: ctx.Log);
            var weights = objective.AverageWeights;
            weights.Save(Path.Combine(ctx.FinalCheckpoint, DomainWeights.FileName));
            ctx.Log.WriteLine($"{ctx.Name}: domain weights {string.Join(", ", names.Select((n, i) => $"{n}={weights.Weights[i]:F3}"))}");
            var metrics = result.LastMetrics.ToDictionary();
            for (var i = 0; i < names.Length; i++) metrics[$"domain_weight_{names[i]}"] = weights.Weights[i];
            return metrics;
        }
    }
}
