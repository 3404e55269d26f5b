namespace Research.Models;

/// <summary>One tensor a safetensors writer will receive: name, safetensors dtype code ("F32", "BF16", ...) and shape.</summary>
public sealed record PlannedTensor(string Name, string DType, long[] Shape)
{
    public long Bytes => Shape.Aggregate(1L, (a, d) => a * d) * Safetensors.DTypeSize(DType);
}
