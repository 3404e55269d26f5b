using Research.Models;

namespace Research.Bench;

/// <summary>One model size to measure: the model, the micro-batch (sequences) and the context length.</summary>
public sealed record BenchSize(string Name, ModelConfig Model, int BatchSize, int BlockLength);

/// <summary>How much to measure. Steps are per timed round; rounds interleave the hand-written loop and ours.</summary>
public sealed record BenchOptions
{
    public IReadOnlyList<BenchSize> Sizes { get; init; } = [BenchSizes.Tiny];
    /// <summary>Untimed steps before timing (both loops).</summary>
    public int WarmupSteps { get; init; } = 2;
    /// <summary>Timed steps per round, per loop.</summary>
    public int Steps { get; init; } = 5;
    /// <summary>Rounds of the two loops, interleaved in alternating order (hand first, then ours first) to cancel drift and order effects.</summary>
    public int Rounds { get; init; } = 2;
    /// <summary>Steps of our loop between the two resident-memory readings (after warm-up).</summary>
    public int RssSteps { get; init; } = 100;
    /// <summary>The model of the resident-memory run (small and fast, so many steps fit).</summary>
    public BenchSize RssSize { get; init; } = BenchSizes.Rss;
    /// <summary>The model whose two checkpoints are merged.</summary>
    public BenchSize MergeSize { get; init; } = BenchSizes.Tiny;
    /// <summary>The model of the merge peak-memory measurement (two checkpoints of it are merged; &gt;= 50 MB each by default).</summary>
    public ModelConfig MergeMemoryModel { get; init; } = Bench.MergeMemory.Model50MB;
    /// <summary>Output shard size of the merge peak-memory measurement: small shards make the bound 1.5 × (tensor + shard) tight.</summary>
    public long MergeMemoryShardBytes { get; init; } = 16_000_000;
    /// <summary>QuickWorld documents packed and evaluated.</summary>
    public int Documents { get; init; } = 400;
    /// <summary>Repetitions of the matmul list when measuring the sgemm rate.</summary>
    public int MatmulRepeats { get; init; } = 5;

    /// <summary>About a minute on two cores: the tiny model only.</summary>
    public static BenchOptions Quick => new();

    /// <summary>tiny, small (~10M parameters) and d_model 512; 2,000 steps for the memory reading. Several minutes.</summary>
    public static BenchOptions Full => new()
    {
        Sizes = [BenchSizes.Tiny, BenchSizes.Small, BenchSizes.D512],
        WarmupSteps = 3, Steps = 8, Rounds = 4, RssSteps = 2000, MergeSize = BenchSizes.Small, Documents = 1000, MatmulRepeats = 10,
    };

    /// <summary>The smallest setting (tests): a micro model, a handful of steps.</summary>
    public static BenchOptions Smallest => new()
    {
        Sizes = [BenchSizes.Micro], WarmupSteps = 1, Steps = 2, Rounds = 1, RssSteps = 10,
        RssSize = BenchSizes.Micro, MergeSize = BenchSizes.Micro, Documents = 40, MatmulRepeats = 2,
        MergeMemoryModel = BenchSizes.Micro.Model, MergeMemoryShardBytes = 1_000_000,
    };
}

public static class BenchSizes
{
    /// <summary>Byte-level vocabulary (ByteTokenizer).</summary>
    const int Vocab = 259;

    public static BenchSize Micro => new("micro", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
    }, 2, 32);

    /// <summary>d_model 128, 4 layers (~0.8M parameters), batch 8 x 128.</summary>
    public static BenchSize Tiny => new("tiny", new ModelConfig { VocabSize = Vocab, MaxPositionEmbeddings = 256 }, 8, 128);

    /// <summary>d_model 384, 6 layers (~9.8M parameters), batch 8 x 256.</summary>
    public static BenchSize Small => new("small", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 384, IntermediateSize = 1024, NumHiddenLayers = 6, NumAttentionHeads = 6, NumKeyValueHeads = 3, MaxPositionEmbeddings = 256,
    }, 8, 256);

    /// <summary>d_model 512, 4 layers, batch 8 x 256: the shape the platform notes measured by hand.</summary>
    public static BenchSize D512 => new("d512", new ModelConfig
    {
        VocabSize = Vocab, HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 4, MaxPositionEmbeddings = 256,
    }, 8, 256);

    /// <summary>The resident-memory run: tiny model, batch 2 x 64, so 2,000 steps take well under a minute.</summary>
    public static BenchSize Rss => new("rss", new ModelConfig { VocabSize = Vocab, MaxPositionEmbeddings = 64 }, 2, 64);
}
