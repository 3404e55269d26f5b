using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages;

/// <summary>Next-token batch: inputs and targets shifted by one; target -100 = not scored.</summary>
public sealed record LmBatch(Tensor Input, Tensor Target, long Normalizer, long Tokens) : IBatch  // Input, Target: (B, T) int64
{
    public void Dispose()
    {
        Input.Dispose();
        Target.Dispose();
    }
}

/// <summary>Language-modelling batches from packed blocks (the loss is <see cref="TokenLoss"/>).</summary>
public static class LanguageModeling
{
    /// <summary>Stacks blocks of T+1 tokens into inputs (B, T) and targets (B, T).</summary>
    public static LmBatch FromBlocks(IReadOnlyList<int[]> blocks, Device device)
    {
        var b = blocks.Count;
        var t = blocks[0].Length - 1;
        var input = new long[b * t];
        var target = new long[b * t];
        for (int i = 0; i < b; i++)
        {
            if (blocks[i].Length != t + 1) throw new ArgumentException($"block {i} has {blocks[i].Length} tokens, expected {t + 1}");
            for (int j = 0; j < t; j++)
            {
                input[i * t + j] = blocks[i][j];
                target[i * t + j] = blocks[i][j + 1];
            }
        }
        return new LmBatch(tensor(input, dtype: int64, device: device).view(b, t), tensor(target, dtype: int64, device: device).view(b, t), b * t, b * t);
    }
}

/// <summary>Language modelling over a mixture of packed corpora: sequence j of the run is <c>mixture.Sample(j)</c>.</summary>
public sealed class MixtureLmObjective(string kind, IMixture mixture, IReadOnlyList<TokenBlocks> sources, string fingerprint) : IObjective<LmBatch>
{
    public string Kind => kind;
    public string Fingerprint => fingerprint;

    public LmBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var blocks = new int[config.BatchSize][];
        for (int i = 0; i < config.BatchSize; i++)
        {
            var (source, block) = mixture.Sample(first + i);
            blocks[i] = sources[source].Block(block).ToArray();
        }
        return LanguageModeling.FromBlocks(blocks, device);
    }

    public Tensor Loss(CausalLM model, LmBatch batch, MetricSink metrics) =>
        TokenLoss.SummedCrossEntropy(model, model.Embed(batch.Input), batch.Target);
}
