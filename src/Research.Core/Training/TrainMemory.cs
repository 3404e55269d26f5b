using Research.Models;

namespace Research.Training;

/// <summary>
/// The memory training adds to a built model, checked before the optimizer allocates it: a float32 gradient and two
/// AdamW moments for each trainable parameter (and a float32 master copy in bf16).
/// </summary>
public static class TrainMemory
{
    public static void EnsureFits(string kind, long modelParameters, int bytesPerWeight, long trainable, bool masterWeights)
    {
        var bytes = (double)modelParameters * bytesPerWeight + trainable * 4.0 * (masterWeights ? 4 : 3);
        if (bytes <= ModelMemory.Available) return;
        throw new InvalidOperationException(
            $"{kind}: training {trainable:N0} of {modelParameters:N0} parameters needs about {bytes / (1L << 30):F1} GiB " +
            $"(weights, gradients, two AdamW moments{(masterWeights ? ", float32 master weights" : "")}) and this machine offers " +
            $"{ModelMemory.Available / (double)(1L << 30):F1} GiB; train LoRA adapters (lora), or use a smaller model or a larger machine");
    }
}
