using Research.Models;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>A batch on its device. <see cref="Normalizer"/> is what the summed loss is divided by
/// (real target tokens for language modelling, pairs for preferences), across all accumulated micro-batches.</summary>
public interface IBatch : IDisposable
{
    long Normalizer { get; }
    /// <summary>Tokens the model reads in this batch (for tokens/s).</summary>
    long Tokens { get; }
}

/// <summary>
/// What a stage brings to the one training loop: how step s's micro-batch m is made (a pure function
/// of the position, so resuming needs no data state) and how a batch becomes a summed loss.
/// </summary>
public interface IObjective<TBatch> where TBatch : IBatch
{
    string Kind { get; }
    /// <summary>Digest of the data and options: a resumed run must see the same one.</summary>
    string Fingerprint { get; }
    /// <summary>Micro-batch <paramref name="micro"/> of optimizer step <paramref name="step"/> (0-based).</summary>
    TBatch Batch(long step, int micro, TrainConfig config, Device device);
    /// <summary>Scalar SUM of the per-unit losses of the batch; extra diagnostics go to <paramref name="metrics"/>.</summary>
    Tensor Loss(CausalLM model, TBatch batch, MetricSink metrics);
}

/// <summary>
/// An objective that carries state from step to step beyond the model and optimizer (DoReMi's domain weights).
/// The trainer saves <see cref="StateTensors"/> into the resumable checkpoint (objective.safetensors) and hands them
/// back through <see cref="LoadState"/> on resume, so an interrupted run continues exactly.
/// </summary>
public interface IStatefulObjective
{
    /// <summary>The state as named tensors (read, not kept, by the caller).</summary>
    IEnumerable<KeyValuePair<string, Tensor>> StateTensors();
    /// <summary>Restores what <see cref="StateTensors"/> returned; <paramref name="source"/> names the file for errors.</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state, string source);
}

/// <summary>
/// An objective that trains parameters of its own beside the model's (DANN's domain discriminator): the optimizer steps them
/// with the model's, under their names (prefixed "objective."). They are not part of the model's checkpoint; an objective
/// with them is also an <see cref="IStatefulObjective"/>, whose state carries their values across a resume.
/// </summary>
public interface IAuxiliaryParameters
{
    IEnumerable<(string Name, TorchSharp.Modules.Parameter P)> AuxiliaryParameters();
}

/// <summary>Device-side running sums of per-step diagnostics, read back only at log steps.</summary>
public sealed class MetricSink : IDisposable
{
    readonly Dictionary<string, (Tensor Sum, int Count)> _sums = new();

    /// <summary>Adds a scalar (detached) to the running mean of <paramref name="name"/>.</summary>
    public void Add(string name, Tensor value)
    {
        using var noGrad = no_grad();
        var v = value.detach().to(float64);
        if (_sums.TryGetValue(name, out var s))
        {
            s.Sum.add_(v);
            _sums[name] = (s.Sum, s.Count + 1);
            v.Dispose();
        }
        else
        {
            // A copy: v can share storage with the caller's tensor (a float64 view such as weights[i]), which add_ would then change.
            _sums[name] = (v.clone().DetachFromDisposeScope(), 1);
            v.Dispose();
        }
    }

    /// <summary>Means since the last drain (one host read per metric), then starts afresh.</summary>
    public Dictionary<string, double> Drain()
    {
        var result = new Dictionary<string, double>();
        foreach (var (name, (sum, count)) in _sums)
        {
            result[name] = sum.item<double>() / count;
            sum.Dispose();
        }
        _sums.Clear();
        return result;
    }

    public void Dispose()
    {
        foreach (var (_, (sum, _)) in _sums) sum.Dispose();
        _sums.Clear();
    }
}
