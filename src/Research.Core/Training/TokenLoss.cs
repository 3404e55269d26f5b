using Research.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Training;

/// <summary>
/// The summed next-token cross-entropy that every language-modelling stage trains on and that evaluation measures
/// (perplexity, completion accuracy): one definition below both.
/// </summary>
public static class TokenLoss
{
    public const long IgnoreIndex = -100;

    /// <summary>Summed next-token cross-entropy over the scored targets (logits (B, T, V), targets (B, T)).</summary>
    public static Tensor SummedCrossEntropy(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(float32), targets.reshape(-1), ignore_index: IgnoreIndex, reduction: nn.Reduction.Sum);

    /// <summary>The summed cross-entropy of each row (logits (B, T, V), targets (B, T)): (B), for per-document scores.</summary>
    public static Tensor RowCrossEntropy(Tensor logits, Tensor targets) =>
        F.cross_entropy(logits.reshape(-1, logits.shape[^1]).to(float32), targets.reshape(-1), ignore_index: IgnoreIndex, reduction: nn.Reduction.None)
            .view(targets.shape[0], -1).sum(1);

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
}
