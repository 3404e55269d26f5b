using TorchSharp;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// Before a checkpoint is written: every parameter and every tensor of the optimizer's state (AdamW's moments and float32
/// master weights) must be finite. A finite loss does not prove it (the update after the last measured loss can overflow;
/// a huge gradient overflows exp_avg_sq to infinity while the update it divides stays finite), and a checkpoint holding
/// them would be resumed from or called final.
/// </summary>
public static class FiniteCheck
{
    /// <summary>The name of the first parameter holding NaN or an infinity, or null when all are finite.</summary>
    public static string? FirstNonFinite(nn.Module model) =>
        FirstNonFinite(model.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)));

    /// <summary>The name of the first optimizer state tensor (exp_avg.NAME, exp_avg_sq.NAME, master.NAME) holding NaN or an infinity.</summary>
    public static string? FirstNonFinite(AdamW optimizer) => FirstNonFinite(optimizer.StateTensors());

    static string? FirstNonFinite(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, t) in tensors)
            if (!t.isfinite().all().item<bool>()) return name;
        return null;
    }

    /// <summary>Throws <see cref="TrainingDivergedException"/> naming the tensor and step when a parameter or, given the
    /// optimizer, an optimizer state tensor is not finite.</summary>
    public static void EnsureFinite(nn.Module model, AdamW? optimizer, string kind, long step, string writing, long lastGoodCheckpoint, string lastDir)
    {
        var what = FirstNonFinite(model) is { } p ? $"parameter '{p}'"
                 : optimizer is not null && FirstNonFinite(optimizer) is { } o ? $"optimizer state '{o}'"
                 : null;
        if (what is null) return;
        throw new TrainingDivergedException(
            $"{kind}: {what} holds NaN or infinite values at step {step}; {writing} was not written. " +
            (lastGoodCheckpoint > 0 ? $"The last good checkpoint (step {lastGoodCheckpoint}) is kept at {lastDir}. " : "No checkpoint was written before it. ") +
            "Lower the learning rate, check the data, or clip gradients harder.");
    }
}
