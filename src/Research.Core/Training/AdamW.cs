using Research.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter), the same update as torch.optim.AdamW, over flat buffers: at construction
/// every trainable parameter becomes a view of one contiguous tensor per group (matrices, which decay; the
/// rest, which do not), and so does its gradient, so zeroing, clipping and the update are a handful of kernels
/// per step whatever the number of tensors. No host synchronisation.
///
/// With master weights (mixed precision), the parameters and their gradients live in a low-precision flat
/// buffer (bf16) that the forward and backward use, while the update runs on a float32 copy, which is then
/// written back: small updates are not lost to bf16 rounding. State is held as named tensors
/// (exp_avg.NAME, exp_avg_sq.NAME, and master.NAME with master weights) so a checkpoint restores it exactly.
/// Every trainable parameter is stepped, with a zero gradient where the loss did not reach it.
/// </summary>
public sealed class AdamW : IDisposable
{
    sealed record Slot(string Name, Parameter P, long Offset, long Numel, long[] Shape);

    sealed class Group(bool decay, Slot[] slots, Tensor parameters, Tensor gradients, Tensor? master, Tensor m, Tensor v) : IDisposable
    {
        public bool Decay { get; } = decay;
        public Slot[] Slots { get; } = slots;
        /// <summary>The parameters' own storage (their dtype).</summary>
        public Tensor Parameters { get; } = parameters;
        /// <summary>The parameters' .grad storage (their dtype).</summary>
        public Tensor Gradients { get; } = gradients;
        /// <summary>float32 master weights when the parameters are low precision.</summary>
        public Tensor? Master { get; } = master;
        public Tensor M { get; } = m;
        public Tensor V { get; } = v;

        public Tensor View(Tensor flat, Slot s) => flat.narrow(0, s.Offset, s.Numel).view(s.Shape);

        public void Dispose()
        {
            Parameters.Dispose(); Gradients.Dispose(); Master?.Dispose(); M.Dispose(); V.Dispose();
        }
    }

    readonly Group[] _groups;
    public long StepCount { get; private set; }
    /// <summary>Whether the update runs on float32 master weights (the parameters being low precision).</summary>
    public bool HasMasterWeights => _groups.Any(g => g.Master is not null);

    /// <param name="parameters">Named parameters; those that do not require grad are left alone.</param>
    /// <param name="master">float32 values of low-precision parameters, by name (mixed precision); null: none.</param>
    public AdamW(IEnumerable<(string Name, Parameter P)> parameters, IReadOnlyDictionary<string, Tensor>? master = null)
    {
        var trainable = parameters.Where(p => p.P.requires_grad).ToArray();
        var groups = new List<Group>();
        using var noGrad = no_grad();
        foreach (var group in trainable.GroupBy(p => (Decay: p.P.dim() >= 2, p.P.dtype, Device: p.P.device.ToString())))
        {
            long offset = 0;
            var slots = group.Select(p => { var s = new Slot(p.Name, p.P, offset, p.P.numel(), p.P.shape); offset += s.Numel; return s; }).ToArray();
            var first = group.First().P;
            var flat = empty(offset, dtype: first.dtype, device: first.device).DetachFromDisposeScope();
            var grads = zeros(offset, dtype: first.dtype, device: first.device).DetachFromDisposeScope();
            var low = first.dtype != float32 && first.dtype != float64;
            if (low && master is null)
                throw new ArgumentException($"AdamW: parameter '{slots[0].Name}' is {first.dtype}; give its float32 master weights (mixed precision) or train in float32");
            var masterFlat = low ? empty(offset, dtype: float32, device: first.device).DetachFromDisposeScope() : null;
            var g = new Group(group.Key.Decay, slots, flat, grads, masterFlat,
                zeros(offset, dtype: float32, device: first.device).DetachFromDisposeScope(), zeros(offset, dtype: float32, device: first.device).DetachFromDisposeScope());
            foreach (var s in slots)
            {
                var view = g.View(flat, s);
                view.copy_(s.P);
                if (masterFlat is not null)
                {
                    if (!master!.TryGetValue(s.Name, out var m32))
                        throw new ArgumentException($"AdamW: no float32 master weights for low-precision parameter '{s.Name}'");
                    using var mv = g.View(masterFlat, s);
                    mv.copy_(m32);
                }
                // The parameter now lives in the flat buffer; a gradient it already had is kept.
                s.P.set_(view);
                using var gv = g.View(grads, s);
                if (s.P.grad is { } old) gv.copy_(old);
                s.P.grad = gv;
                view.Dispose();
            }
            groups.Add(g);
        }
        _groups = groups.ToArray();
    }

    public IEnumerable<Tensor> Parameters => _groups.SelectMany(g => g.Slots).Select(s => (Tensor)s.P);

    public void ZeroGrad()
    {
        foreach (var g in _groups) g.Gradients.zero_();
    }

    /// <summary>Scales gradients so their global L2 norm is at most maxNorm (0: no clipping); returns the norm before clipping, on device.</summary>
    public Tensor ClipGradNorm(double maxNorm)
    {
        using var noGrad = no_grad();
        var device = _groups.Length > 0 ? _groups[0].Gradients.device : CPU;
        if (_groups.Length == 0) return zeros(1, device: device);
        using var scope = NewDisposeScope();
        var squares = _groups.Select(g => g.Gradients.dtype == float32 ? g.Gradients.dot(g.Gradients) : g.Gradients.to(float32).pow(2).sum()).ToArray();
        var norm = (squares.Length == 1 ? squares[0] : stack(squares).sum()).sqrt();
        if (maxNorm > 0)
        {
            var coef = (maxNorm / (norm + 1e-6)).clamp_max(1.0);
            foreach (var g in _groups) g.Gradients.mul_(coef.to(g.Gradients.dtype));
        }
        return norm.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether contiguous CPU groups take the one-pass update (<see cref="FusedAdamW"/>); false: the same update as
    /// separate libtorch kernels, which is also what other devices use.
    /// </summary>
    public bool Fused { get; init; } = true;

    public void Step(double lr, TrainConfig c)
    {
        StepCount++;
        var bc1 = 1 - Math.Pow(c.Beta1, StepCount);
        var bc2 = 1 - Math.Pow(c.Beta2, StepCount);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var g in _groups)
        {
            if (Fused && FusedAdamW.Supports(g.Parameters, g.Gradients, g.Master))
            {
                FusedAdamW.Step(g.Parameters, g.Gradients, g.Master, g.M, g.V, FusedAdamW.For(lr, c, StepCount, g.Decay && c.WeightDecay > 0));
                continue;
            }
            var grad = g.Master is null ? g.Gradients : g.Gradients.to(float32);
            var target = g.Master ?? g.Parameters;
            if (g.Decay && c.WeightDecay > 0) target.mul_(1 - lr * c.WeightDecay);
            g.M.mul_(c.Beta1).add_(grad, alpha: 1 - c.Beta1);
            g.V.mul_(c.Beta2).addcmul_(grad, grad, value: 1 - c.Beta2);
            var denom = g.V.sqrt().div_(Math.Sqrt(bc2)).add_(c.Epsilon);
            target.addcdiv_(g.M, denom, value: -lr / bc1);
            if (g.Master is not null) g.Parameters.copy_(g.Master);
        }
    }

    /// <summary>exp_avg.NAME and exp_avg_sq.NAME (and master.NAME with master weights), for optimizer.safetensors.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors() =>
        _groups.SelectMany(g => g.Slots.SelectMany(s =>
        {
            var list = new List<KeyValuePair<string, Tensor>> { new("exp_avg." + s.Name, g.View(g.M, s)), new("exp_avg_sq." + s.Name, g.View(g.V, s)) };
            if (g.Master is not null) list.Add(new("master." + s.Name, g.View(g.Master, s)));
            return list;
        }));

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount, string source)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var g in _groups)
            foreach (var s in g.Slots)
            {
                var targets = new List<(string, Tensor)> { ("exp_avg." + s.Name, g.View(g.M, s)), ("exp_avg_sq." + s.Name, g.View(g.V, s)) };
                if (g.Master is not null) targets.Add(("master." + s.Name, g.View(g.Master, s)));
                foreach (var (key, target) in targets)
                {
                    if (!state.TryGetValue(key, out var t))
                        throw new InvalidDataException($"{source}: optimizer state lacks tensor '{key}'");
                    if (!t.shape.SequenceEqual(target.shape))
                        throw new InvalidDataException($"{source}: optimizer tensor '{key}' has shape [{string.Join(",", t.shape)}], expected [{string.Join(",", target.shape)}]");
                    target.copy_(t);
                }
            }
        // the parameters follow their restored master weights
        foreach (var g in _groups) if (g.Master is not null) g.Parameters.copy_(g.Master);
        StepCount = stepCount;
    }

    /// <summary>float32 copies of the master weights, by parameter name (empty without master weights).</summary>
    public IReadOnlyDictionary<string, Tensor> MasterWeights()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var g in _groups)
            if (g.Master is not null)
                foreach (var s in g.Slots) d[s.Name] = g.View(g.Master, s).clone().DetachFromDisposeScope();
        return d;
    }

    public void Dispose()
    {
        foreach (var g in _groups) g.Dispose();
    }
}
