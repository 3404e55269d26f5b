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

/// <summary>The causal language-modelling loss every pretraining-like stage shares.</summary>
public static class LanguageModeling
{
    public const long IgnoreIndex = -100;

    /// <summary>Summed next-token cross-entropy over the scored targets (logits (B, T, V), targets (B, T)).</summary>
    public static Tensor SummedCrossEntropy(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(float32), targets.reshape(-1), ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);

    /// <summary>
    /// Summed next-token cross-entropy of the model on embeddings (B, T, C) (<see cref="CausalLM.Embed"/>, perturbed or not):
    /// from full logits, or through <see cref="ChunkedLoss"/> when <see cref="LossChunking"/> says so for the model's
    /// vocabulary (the same value and gradient to rounding, without (B·T, V) logits kept for backward).
    /// </summary>
    public static Tensor SummedCrossEntropy(CausalLM model, Tensor embeddings, Tensor targets, Tensor? positionIds = null, Tensor? attentionMask = null)
    {
        var rows = LossChunking.RowsFor(model.Config.VocabSize);
        if (rows == 0) return SummedCrossEntropy(model.ForwardEmbeddings(embeddings, positionIds, attentionMask), targets);
        return ChunkedLoss.SummedCrossEntropy(model.HiddenEmbeddings(embeddings, positionIds, attentionMask), model.HeadWeight, targets, model.FinalLogitSoftcap, rows);
    }

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
        LanguageModeling.SummedCrossEntropy(model, model.Embed(batch.Input), batch.Target);
}
