using TorchSharp;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// Before a checkpoint is written: every parameter must be finite. A finite loss does not prove it (the update after
/// the last measured loss can overflow), and a checkpoint with NaN weights would be resumed from or called final.
/// </summary>
public static class FiniteCheck
{
    /// <summary>The name of the first parameter holding NaN or an infinity, or null when all are finite.</summary>
    public static string? FirstNonFinite(nn.Module model)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (!p.isfinite().all().item<bool>()) return name;
        return null;
    }

    /// <summary>Throws <see cref="TrainingDivergedException"/> naming the tensor and step when a parameter is not finite.</summary>
    public static void EnsureFinite(nn.Module model, string kind, long step, string writing, long lastGoodCheckpoint, string lastDir)
    {
        if (FirstNonFinite(model) is not { } bad) return;
        throw new TrainingDivergedException(
            $"{kind}: parameter '{bad}' holds NaN or infinite values at step {step}; {writing} was not written. " +
            (lastGoodCheckpoint > 0 ? $"The last good checkpoint (step {lastGoodCheckpoint}) is kept at {lastDir}. " : "No checkpoint was written before it. ") +
            "Lower the learning rate, check the data, or clip gradients harder.");
    }
}
