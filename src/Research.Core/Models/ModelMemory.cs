namespace Research.Models;

/// <summary>
/// The memory a model config implies, checked before anything is allocated: a config.json with a million layers or a
/// vast hidden size is an error naming the key that dominates, not an abort inside libtorch's allocator.
/// </summary>
public static class ModelMemory
{
    /// <summary>About how many parameters <paramref name="c"/> builds (an upper bound: a gated MLP is assumed).</summary>
    public static double Parameters(ModelConfig c) => Embeddings(c) + c.NumHiddenLayers * PerLayer(c);

    static double Embeddings(ModelConfig c) =>
        (double)c.VocabSize * c.HiddenSize * (c.TieWordEmbeddings ? 1 : 2) + (c.Family.LearnedPositions ? (double)c.MaxPositionEmbeddings * c.HiddenSize : 0);

    static double PerLayer(ModelConfig c)
    {
        double h = c.HiddenSize, hd = c.HeadDim;
        var attention = h * hd * (2.0 * c.NumAttentionHeads + 2.0 * c.NumKeyValueHeads);
        return attention + 3.0 * h * c.IntermediateSize + 4 * h;
    }

    /// <summary>The memory this machine (or container) offers the process.</summary>
    public static long Available => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>
    /// Throws when <paramref name="bytesPerParameter"/> bytes for each parameter of <paramref name="c"/> exceed the memory
    /// available, naming the key behind most of it (<c>num_hidden_layers</c> and the layer sizes, or <c>vocab_size</c>).
    /// </summary>
    public static void EnsureFits(ModelConfig c, double bytesPerParameter, string purpose, string? source = null)
    {
        var bytes = Parameters(c) * bytesPerParameter;
        if (bytes <= Available) return;
        var layers = c.NumHiddenLayers * PerLayer(c);
        var culprit = layers >= Embeddings(c)
            ? $"num_hidden_layers {c.NumHiddenLayers} × (hidden_size {c.HiddenSize}, intermediate_size {c.IntermediateSize}, num_attention_heads {c.NumAttentionHeads})"
            : $"vocab_size {c.VocabSize} × hidden_size {c.HiddenSize}";
        throw new InvalidDataException(
            $"{(source is null ? "" : source + ": ")}{culprit} gives about {Parameters(c):G3} parameters, {Gb(bytes)} {purpose}, " +
            $"and this machine offers {Gb(Available)}; check the config's sizes, or use a machine with more memory");
    }

    static string Gb(double bytes) => $"{bytes / (1L << 30):F1} GiB";
}
