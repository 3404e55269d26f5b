using Research.Models;

namespace Research.Bench;

/// <summary>One model size to measure: the model, the micro-batch (sequences) and the context length.</summary>
public sealed record BenchSize(string Name, ModelConfig Model, int BatchSize, int BlockLength);

/// <summary>When the bench measures bf16: only where the device computes it natively (elsewhere it is emulated, tens of times slower), or always.</summary>
public enum Bf16Measure { WhereNative, Always }

/// <summary>
/// How much to measure. Steps are per timed round; rounds interleave the hand-written loop, ours, the sgemm shapes and the
/// PyTorch peer. Each measurement has a budget in seconds: past it, the measurement stops after its current round.
/// </summary>
public sealed record BenchOptions
{
    public string Label { get; init; } = "quick";
    public IReadOnlyList<BenchSize> Sizes { get; init; } = [BenchSizes.Tiny];
    /// <summary>Untimed steps before timing (both loops, and the peer once).</summary>
    public int WarmupSteps { get; init; } = 2;
    /// <summary>Timed steps per round, per loop.</summary>
    public int Steps { get; init; } = 5;
    /// <summary>Rounds of the loops, interleaved in alternating order (hand, ours, sgemm, peer; then the reverse) to cancel drift and order effects.</summary>
    public int Rounds { get; init; } = 2;
    /// <summary>Steps of our loop between the two resident-memory readings (after warm-up).</summary>
    public int RssSteps { get; init; } = 100;
    /// <summary>The model of the resident-memory run (small and fast, so many steps fit).</summary>
    public BenchSize RssSize { get; init; } = BenchSizes.Rss;
    /// <summary>The model whose two checkpoints are merged for the bandwidth (at least 200 MB each in the default bench).</summary>
    public ModelConfig MergeModel { get; init; } = Bench.MergeMemory.Model50MB;
    /// <summary>The model of the merge peak-memory measurement (two checkpoints of it are merged; &gt;= 50 MB each by default).</summary>
    public ModelConfig MergeMemoryModel { get; init; } = Bench.MergeMemory.Model50MB;
    /// <summary>Output shard size of the merge peak-memory measurement: small shards make the bound 1.5 × (tensor + shard) tight.</summary>
    public long MergeMemoryShardBytes { get; init; } = 16_000_000;
    /// <summary>QuickWorld documents packed and evaluated.</summary>
    public int Documents { get; init; } = 400;
    /// <summary>Repetitions of the matmul list when measuring the bf16 matmul rate.</summary>
    public int MatmulRepeats { get; init; } = 5;
    public Bf16Measure Bf16 { get; init; } = Bf16Measure.WhereNative;
    /// <summary>Run the PyTorch peer (<see cref="PeerLoop"/>) in the same rounds.</summary>
    public bool Peer { get; init; } = true;
    /// <summary>Budget of one size's rounds (after the first two, which always run).</summary>
    public double SizeSeconds { get; init; } = 30;
    /// <summary>Budget of one size's bf16 measurements (where measured).</summary>
    public double Bf16Seconds { get; init; } = 20;
    public double MergeSeconds { get; init; } = 20;
    public double MergeMemorySeconds { get; init; } = 10;
    /// <summary>Decoder layers of the Qwen3-0.6B-shaped measurements (28 = the real shape); 0 = none.</summary>
    public int RealShapeLayers { get; init; } = 2;
    /// <summary>Budget of one real-shape measurement (a process of its own, killed past it).</summary>
    public double RealShapeSeconds { get; init; } = 60;

    /// <summary>Sizes of the on-policy measurements (<see cref="Benchmarks.Online"/>): rollouts with and without the KV cache, GRPO steps.</summary>
    public IReadOnlyList<BenchSize> OnlineSizes { get; init; } = [BenchSizes.Tiny];
    /// <summary>Completions per prompt (G) of the on-policy measurements.</summary>
    public int OnlineCompletions { get; init; } = 4;
    /// <summary>New tokens per completion (capped by the model's context).</summary>
    public int OnlineNewTokens { get; init; } = 128;
    /// <summary>Timed GRPO steps per size (after one untimed).</summary>
    public int OnlineSteps { get; init; } = 2;
    /// <summary>Budget of one size's sampler rounds (the first always runs).</summary>
    public double OnlineSeconds { get; init; } = 20;

    /// <summary>Under two minutes on two cores: the tiny model, 70 MB merge checkpoints, the Qwen3 shape with 2 of its 28 layers.</summary>
    public static BenchOptions Quick => new();

    /// <summary>tiny, small (~10M parameters) and d_model 512; 237 MB merge checkpoints; the whole Qwen3-0.6B shape. Under ten minutes.</summary>
    public static BenchOptions Full => new()
    {
        Label = "default",
        Sizes = [BenchSizes.Tiny, BenchSizes.Small, BenchSizes.D512],
        WarmupSteps = 2, Steps = 6, Rounds = 4, RssSteps = 1000, MergeModel = BenchSizes.Merge200MB, Documents = 1000, MatmulRepeats = 5,
        SizeSeconds = 60, Bf16Seconds = 60, MergeSeconds = 30, MergeMemorySeconds = 40, RealShapeLayers = 28, RealShapeSeconds = 150,
        OnlineSizes = [BenchSizes.Tiny, BenchSizes.Small], OnlineCompletions = 8, OnlineSteps = 3, OnlineSeconds = 60,
    };

    /// <summary>The smallest setting (tests): a micro model, a handful of steps, bf16 measured whatever the CPU, one merge method, no peer, no real shape.</summary>
    public static BenchOptions Smallest => new()
    {
        Label = "smallest",
        Sizes = [BenchSizes.Micro], WarmupSteps = 1, Steps = 2, Rounds = 1, RssSteps = 10,
        RssSize = BenchSizes.Micro, MergeModel = BenchSizes.Micro.Model, Documents = 40, MatmulRepeats = 2,
        MergeMemoryModel = BenchSizes.Micro.Model, MergeMemoryShardBytes = 1_000_000, MergeMemorySeconds = 0, Bf16 = Bf16Measure.Always, Peer = false, RealShapeLayers = 0,
        OnlineSizes = [BenchSizes.Micro], OnlineCompletions = 2, OnlineNewTokens = 8, OnlineSteps = 1, OnlineSeconds = 0,
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

    /// <summary>d_model 1024, 5 layers, 59M parameters: a 237 MB checkpoint, so the merge measures bandwidth rather than start-up.</summary>
    public static ModelConfig Merge200MB => new()
    {
        VocabSize = Vocab, HiddenSize = 1024, IntermediateSize = 2816, NumHiddenLayers = 5, NumAttentionHeads = 16, NumKeyValueHeads = 8, MaxPositionEmbeddings = 256,
    };

    /// <summary>The resident-memory run: tiny model, batch 2 x 64, so 2,000 steps take well under a minute.</summary>
    public static BenchSize Rss => new("rss", new ModelConfig { VocabSize = Vocab, MaxPositionEmbeddings = 64 }, 2, 64);
}
