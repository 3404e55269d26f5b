using Research.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// bf16 training with float32 master weights: <see cref="Begin"/> keeps a float32 copy of every parameter and
/// casts the model to bf16; <see cref="AdamW"/> updates the float32 copies of the trainable ones and writes them
/// back; <see cref="End"/> returns the model to float32 with the master weights (trainable) and the kept copies
/// (frozen), so nothing of the input precision is lost in the stage's output.
/// </summary>
public static class MixedPrecision
{
    public static ScalarType DType(Precision p) => p switch
    {
        Precision.Float32 => float32,
        Precision.BFloat16 => bfloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(p), p, "unknown precision"),
    };

    /// <summary>Float32 copies of every parameter, by name; then the model is cast to <paramref name="precision"/>.</summary>
    public static IReadOnlyDictionary<string, Tensor> Begin(CausalLM model, Precision precision)
    {
        var dtype = DType(precision);
        if (model.EmbeddingWeight.dtype != float32)
            throw new InvalidOperationException($"mixed precision: the model is already {model.EmbeddingWeight.dtype}; it must start in float32");
        using var noGrad = no_grad();
        var copies = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope());
        model.to(dtype);
        return copies;
    }

    /// <summary>Back to float32: trainable parameters from the optimizer's master weights, frozen ones from their kept copies.</summary>
    public static void End(CausalLM model, AdamW optimizer, IReadOnlyDictionary<string, Tensor> copies)
    {
        var master = optimizer.MasterWeights();
        try
        {
            model.to(float32);
            using var noGrad = no_grad();
            foreach (var (name, p) in model.named_parameters())
                p.copy_(master.TryGetValue(name, out var m) ? m : copies[name]);
        }
        finally
        {
            foreach (var t in master.Values) t.Dispose();
        }
    }

    public static void Release(IReadOnlyDictionary<string, Tensor>? copies)
    {
        if (copies is null) return;
        foreach (var t in copies.Values) t.Dispose();
    }
}
