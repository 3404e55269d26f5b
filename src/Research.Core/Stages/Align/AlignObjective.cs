using System.Collections.Concurrent;
using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>The align objective: example order is a seeded permutation per epoch, so batch (step, micro) is a pure function.</summary>
public sealed class AlignObjective : IObjective<PreferenceBatch>
{
    readonly IReadOnlyList<AlignItem> _items;
    readonly AlignOptions _o;
    readonly int _pad;
    readonly ConcurrentDictionary<long, int[]> _perms = new();

    public AlignObjective(IReadOnlyList<AlignItem> train, AlignOptions options, int padId, string dataFingerprint)
    {
        if (train.Count == 0) throw new ArgumentException("align: no training examples");
        if (train.Any(i => double.IsNaN(i.RefFirst) || double.IsNaN(i.RefSecond)))
            throw new ArgumentException("align: reference log-probs are missing; compute them first (ReferenceCache.Prepare)");
        var paired = options.Mode is AlignMode.Paired or AlignMode.SimPO or AlignMode.Orpo;
        if (paired && train.Any(i => !i.Paired))
            throw new ArgumentException($"align: mode {options.Mode} needs paired data (prompt/chosen/rejected); use mode Kto or Pointwise for prompt/completion/label");
        (_items, _o, _pad) = (train, options.Validate(), padId);
        Fingerprint = $"{dataFingerprint}|{JsonSerializer.Serialize(options with { Train = new TrainConfig() })}";
    }

    public string Kind => "align";
    public string Fingerprint { get; }

    public PreferenceBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var n = _items.Count;
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var items = new AlignItem[config.BatchSize];
        for (int i = 0; i < items.Length; i++)
        {
            var g = first + i;
            var perm = _perms.GetOrAdd(g / n, e => new Rng(Rng.Derive(config.Seed, 0xA11, e)).Permutation(n));
            items[i] = _items[perm[g % n]];
        }
        return PreferenceBatch.From(items, _o.Mode != AlignMode.Pointwise, _pad, device);
    }

    public Tensor Loss(CausalLM model, PreferenceBatch batch, MetricSink metrics)
    {
        var b = batch.Normalizer;
        var lp = SequenceLogProbs.Compute(model, batch.Input, batch.Target);                      // (R)
        var first = new SequenceLogProbs(lp.Sum.narrow(0, 0, b), lp.Count.narrow(0, 0, b));        // (B)
        var refFirst = batch.Reference.narrow(0, 0, b);
        var p = _o.Preference;
        Tensor losses;
        if (_o.Mode is AlignMode.Paired or AlignMode.SimPO or AlignMode.Orpo)
        {
            var second = new SequenceLogProbs(lp.Sum.narrow(0, b, b), lp.Count.narrow(0, b, b));
            var r = _o.Mode switch
            {
                AlignMode.Paired => PreferenceLosses.Pairs(first, second, refFirst, batch.Reference.narrow(0, b, b), p),
                AlignMode.SimPO => PreferenceLosses.SimPO(first, second, p),
                _ => PreferenceLosses.Orpo(first, second, p),
            };
            r.Report(metrics);
            metrics.Add("length/rejected", second.Count.mean());
            losses = r.Losses;
        }
        else
        {
            var desirable = batch.Labels.gt(0.5);
            var d = first.Sum - refFirst;
            Tensor rewards;
            if (_o.Mode == AlignMode.Kto)
            {
                var k = PreferenceLosses.Kto(first.Sum, refFirst, desirable, lp.Sum.narrow(0, b, b), batch.Reference.narrow(0, b, b), p);
                k.Report(metrics);
                (losses, rewards) = (k.Losses, k.Rewards);
            }
            else
            {
                losses = PreferenceLosses.Pointwise(d, batch.Labels, p.Beta);
                rewards = p.Beta * d.detach();
                var good = desirable.to(float32);
                metrics.Add("rewards/chosen", (rewards * good).sum() / good.sum().clamp_min(1));
                metrics.Add("rewards/rejected", (rewards * (1 - good)).sum() / (1 - good).sum().clamp_min(1));
            }
            metrics.Add("rewards/accuracy", rewards.gt(0).eq(desirable).to(float32).mean());   // implicit reward's sign agrees with the label
        }
        using (no_grad())
        {
            // Per-token mean of log pi - log pi_ref on the first rows (chosen / the completion): a KL-to-reference estimate on data.
            metrics.Add("kl_ref", (first.Sum - refFirst).sum() / first.Count.sum().clamp_min(1));
            metrics.Add("length/chosen", first.Count.mean());
        }
        return losses.sum();
    }
}
