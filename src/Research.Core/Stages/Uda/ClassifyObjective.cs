using Research.Data;
using TorchSharp;
using Research.Models;
using Research.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages.Uda;

/// <summary>Encoded examples of one side (source or target): ids per row, class index per row (source), domain index per row.</summary>
public sealed record EncodedSide(int[][] Rows, long[] Labels, long[] Domains, int Truncated);

/// <summary>
/// The classification objective of the one training loop: the summed cross-entropy of the source rows, plus, for a uda stage,
/// <see cref="UdaOptions.Weight"/> times the method's term scaled by the batch's source rows (so the loop's division by the
/// normalizer gives CE mean + weight · term). Tent: the summed entropy of the target rows and nothing else. Each step's
/// rows come from seeded per-epoch permutations of each side, and strong views from streams seeded by (seed, step, micro):
/// a batch is a function of its position, so a resumed run needs no data state beyond the discriminator's weights.
/// </summary>
public sealed class ClassifyObjective : IObjective<ClassifyBatch>, IAuxiliaryParameters, IStatefulObjective, IDisposable
{
    readonly EncodedSide? _source;
    readonly EncodedSide? _target;
    readonly UdaOptions? _uda;
    readonly bool _tent;
    readonly int _padId;
    readonly long _seed;
    readonly int _sourceDomains;
    readonly Sequential? _discriminator;
    readonly Dictionary<int, (long Epoch, int[] Order)> _orders = new();

    /// <param name="source">Labelled rows (null for tent).</param>
    /// <param name="target">Unlabelled target rows (null for classify).</param>
    /// <param name="uda">The adaptation (null: plain supervised classify, or tent).</param>
    public ClassifyObjective(string kind, EncodedSide? source, EncodedSide? target, UdaOptions? uda, int padId, int hidden, long seed, string fingerprint, Device device)
    {
        (Kind, _source, _target, _uda, _padId, _seed, Fingerprint) = (kind, source, target, uda, padId, seed, fingerprint);
        _tent = kind == "tent";
        if (_tent ? target is null : source is null) throw new ArgumentException($"{kind}: no {(_tent ? "target" : "source")} rows");
        if (uda is not null && target is null) throw new ArgumentException($"{kind}: {uda.Method} needs unlabelled target rows");
        _sourceDomains = source is null || source.Domains.Length == 0 ? 0 : (int)source.Domains.Max() + 1;
        if (uda?.Method == UdaMethod.Dann)
        {
            _discriminator = nn.Sequential(("0", nn.Linear(hidden, uda.DiscriminatorHidden)), ("1", nn.ReLU()), ("2", nn.Linear(uda.DiscriminatorHidden, 1)));
            using var generator = new Generator((ulong)Rng.Derive(seed, 0xD15C));
            using (no_grad())
                foreach (var (name, p) in _discriminator.named_parameters())
                    if (name.EndsWith(".bias")) p.zero_(); else p.normal_(0.0, 0.02, generator);
            _discriminator.to(device);
        }
    }

    public string Kind { get; }
    public string Fingerprint { get; }

    public IEnumerable<(string Name, Parameter P)> AuxiliaryParameters() =>
        _discriminator is null ? [] : _discriminator.named_parameters().Select(p => ("discriminator." + p.name, p.parameter));

    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
        AuxiliaryParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.P));

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        using var noGrad = no_grad();
        foreach (var (name, p) in AuxiliaryParameters())
        {
            if (!state.TryGetValue(name, out var t)) throw new InvalidDataException($"{source}: lacks tensor '{name}' of the domain discriminator");
            if (!t.shape.SequenceEqual(p.shape)) throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], the discriminator's is [{string.Join(", ", p.shape)}]");
            p.copy_(t);
        }
    }

    int[] Rows(EncodedSide side, int tag, long first, int count)
    {
        var n = side.Rows.Length;
        var picked = new int[count];
        for (var i = 0; i < count; i++)
        {
            var j = first + i;
            var epoch = j / n;
            if (!_orders.TryGetValue(tag, out var o) || o.Epoch != epoch)
                _orders[tag] = o = (epoch, new Rng(Rng.Derive(_seed, 0xC1A5, tag, epoch)).Permutation(n));
            picked[i] = o.Order[(int)(j % n)];
        }
        return picked;
    }

    public ClassifyBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var b = config.BatchSize;
        var first = (step * config.Accumulation + micro) * b;
        var progress = Math.Clamp(step / (double)config.Steps, 0, 1);
        var rng = new Rng(Rng.Derive(_seed, 0x57A0, step, micro));
        var strong = _uda?.Method is UdaMethod.SelfTraining or UdaMethod.AdaMatch;
        int[] Strong(int[] row) => ClassifyBatch.Strong(row, _uda!.StrongDropout, _uda.StrongSpan, _padId, rng);
        long tokens = 0;
        Tensor Ids(IReadOnlyList<int[]> rows) { tokens += rows.Sum(r => (long)r.Length); return ClassifyBatch.Collate(rows, _padId, device); }

        var side = _source ?? _target!;                                    // tent: the target stream is its only side
        var s = Rows(side, 0, first, b);
        var sourceRows = s.Select(i => side.Rows[i]).ToArray();
        var labels = tensor(_source is null ? new long[b] : s.Select(i => _source.Labels[i]).ToArray(), dtype: int64, device: device);
        var domains = tensor(_source is null ? new long[b] : s.Select(i => _source.Domains[i]).ToArray(), dtype: int64, device: device);
        Tensor? target = null, targetStrong = null, sourceStrong = null;
        if (_uda is not null)
        {
            var t = Rows(_target!, 1, first, b).Select(i => _target!.Rows[i]).ToArray();
            target = Ids(t);
            if (strong) targetStrong = Ids(t.Select(Strong).ToArray());
            if (_uda.Method == UdaMethod.AdaMatch) sourceStrong = Ids(sourceRows.Select(Strong).ToArray());
        }
        return new ClassifyBatch(Ids(sourceRows), labels, domains, sourceStrong, target, targetStrong, progress, tokens);
    }

    public Tensor Loss(CausalLM model, ClassifyBatch batch, MetricSink metrics)
    {
        var n = (double)batch.Normalizer;
        var features = SequenceClassification.Features(model, batch.Source);                       // (B, C)
        var logits = SequenceClassification.Logits(model, features).to(float32);                     // (B, K)
        if (_tent)
        {
            var entropy = UdaLosses.Entropy(logits).sum();
            metrics.Add("entropy", entropy / n);
            return entropy;
        }
        var ce = F.cross_entropy(logits, batch.Labels, reduction: nn.Reduction.Sum);
        metrics.Add("loss_cls", ce / n);
        using (no_grad()) metrics.Add("train_accuracy", logits.argmax(-1).eq(batch.Labels).to(float32).mean());
        if (_uda is null) return ce;

        var u = _uda;
        Tensor term;
        switch (u.Method)
        {
            case UdaMethod.Dann:
            {
                var lambda = UdaLosses.DannLambda(batch.Progress, u.DannGamma);
                var ft = SequenceClassification.Features(model, batch.Target!);
                var ds = _discriminator!.forward(UdaLosses.GradientReversal(features.to(float32), lambda)).squeeze(-1);
                var dt = _discriminator.forward(UdaLosses.GradientReversal(ft.to(float32), lambda)).squeeze(-1);
                term = UdaLosses.DomainLoss(ds, dt);
                using (no_grad())
                {
                    metrics.Add("dann_lambda", tensor(lambda));
                    metrics.Add("domain_accuracy", cat([ds.lt(0), dt.gt(0)]).to(float32).mean());
                }
                break;
            }
            case UdaMethod.Coral:
                term = UdaLosses.Coral(features.to(float32), SequenceClassification.Features(model, batch.Target!).to(float32));
                break;
            case UdaMethod.Mmd:
            {
                var fs = features.to(float32);
                var ft = SequenceClassification.Features(model, batch.Target!).to(float32);
                var scale = UdaLosses.MeanSquaredDistance(fs, ft);
                term = UdaLosses.MultiKernelMmd(fs, ft, u.KernelMultipliers.Select(m => Math.Max(1e-12, m * scale)).ToArray());
                break;
            }
            case UdaMethod.M3sda:
            {
                var fs = features.to(float32);
                var ft = SequenceClassification.Features(model, batch.Target!).to(float32);
                var sources = new List<Tensor>();
                for (var d = 0; d < Math.Max(1, _sourceDomains); d++)
                {
                    var rows = batch.Domains.eq(d).nonzero().squeeze(-1);
                    if (rows.shape[0] > 0) sources.Add(fs.index_select(0, rows));
                }
                term = UdaLosses.MomentDistance(sources, ft, u.MomentOrder);
                break;
            }
            case UdaMethod.SelfTraining:
            {
                Tensor probs;
                using (no_grad()) probs = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.Target!)).to(float32).softmax(-1);
                var (pseudo, mask) = UdaLosses.PseudoLabels(probs, tensor(u.Threshold, dtype: float32, device: probs.device));
                var strongLogits = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.TargetStrong!)).to(float32);
                term = UdaLosses.MaskedCrossEntropy(strongLogits, pseudo, mask) / batch.Target!.shape[0];
                metrics.Add("pseudo_label_rate", mask.mean());
                break;
            }
            case UdaMethod.AdaMatch:
            {
                // The source loss is the mean over its weak and strong views (the weak one is the text itself).
                var strongSource = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.SourceStrong!)).to(float32);
                ce = (ce + F.cross_entropy(strongSource, batch.Labels, reduction: nn.Reduction.Sum)) / 2;
                Tensor aligned, threshold;
                using (no_grad())
                {
                    var sourceProbs = logits.softmax(-1);
                    var targetProbs = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.Target!)).to(float32).softmax(-1);
                    aligned = UdaLosses.DistributionAlignment(targetProbs, sourceProbs);
                    threshold = UdaLosses.RelativeThreshold(sourceProbs, u.Threshold);
                }
                var (pseudo, mask) = UdaLosses.PseudoLabels(aligned, threshold);
                var strongLogits = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.TargetStrong!)).to(float32);
                var mu = UdaLosses.AdaMatchWarmup((long)Math.Round(batch.Progress * 1_000_000), 1_000_000);
                term = UdaLosses.MaskedCrossEntropy(strongLogits, pseudo, mask) / batch.Target!.shape[0] * mu;
                metrics.Add("pseudo_label_rate", mask.mean());
                metrics.Add("relative_threshold", threshold);
                metrics.Add("unlabelled_weight", tensor(mu));
                break;
            }
            default:
                throw new NotSupportedException($"uda: method {u.Method}");
        }
        metrics.Add("loss_uda", term);
        return ce + term * (u.Weight * n);
    }

    public void Dispose() => _discriminator?.Dispose();
}
