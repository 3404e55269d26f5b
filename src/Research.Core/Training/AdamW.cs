using Research.Models;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter), the same update as torch.optim.AdamW, with its state held as
/// named tensors so a checkpoint can save and restore it exactly. Decoupled weight decay applies to
/// matrices only. No host synchronisation.
/// </summary>
public sealed class AdamW : IDisposable
{
    readonly (string Name, TorchSharp.Modules.Parameter P, Tensor M, Tensor V, bool Decay)[] _slots;
    public long StepCount { get; private set; }

    public AdamW(IEnumerable<(string Name, TorchSharp.Modules.Parameter P)> parameters)
    {
        _slots = parameters.Where(p => p.P.requires_grad)
            .Select(p => (p.Name, p.P, zeros_like(p.P).DetachFromDisposeScope(), zeros_like(p.P).DetachFromDisposeScope(), p.P.dim() >= 2))
            .ToArray();
    }

    public IEnumerable<Tensor> Parameters => _slots.Select(s => (Tensor)s.P);

    public void ZeroGrad()
    {
        foreach (var s in _slots) s.P.grad?.zero_();
    }

    public void Step(double lr, TrainConfig c)
    {
        StepCount++;
        var bc1 = 1 - Math.Pow(c.Beta1, StepCount);
        var bc2 = 1 - Math.Pow(c.Beta2, StepCount);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var (_, p, m, v, decay) in _slots)
        {
            var g = p.grad;
            if (g is null) continue;
            if (decay && c.WeightDecay > 0) p.mul_(1 - lr * c.WeightDecay);
            m.mul_(c.Beta1).add_(g, alpha: 1 - c.Beta1);
            v.mul_(c.Beta2).addcmul_(g, g, value: 1 - c.Beta2);
            var denom = (v.sqrt() / Math.Sqrt(bc2)).add_(c.Epsilon);
            p.addcdiv_(m, denom, value: -lr / bc1);
        }
    }

    /// <summary>exp_avg.NAME and exp_avg_sq.NAME, for optimizer.safetensors.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
        _slots.SelectMany(s => new[]
        {
            new KeyValuePair<string, Tensor>("exp_avg." + s.Name, s.M),
            new KeyValuePair<string, Tensor>("exp_avg_sq." + s.Name, s.V),
        });

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount, string source)
    {
        using var noGrad = no_grad();
        foreach (var (name, _, m, v, _) in _slots)
        {
            foreach (var (key, target) in new[] { ("exp_avg." + name, m), ("exp_avg_sq." + name, v) })
            {
                if (!state.TryGetValue(key, out var t))
                    throw new InvalidDataException($"{source}: optimizer state lacks tensor '{key}'");
                if (!t.shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{source}: optimizer tensor '{key}' has shape [{string.Join(",", t.shape)}], expected [{string.Join(",", target.shape)}]");
                target.copy_(t);
            }
        }
        StepCount = stepCount;
    }

    public void Dispose()
    {
        foreach (var s in _slots) { s.M.Dispose(); s.V.Dispose(); }
    }
}
