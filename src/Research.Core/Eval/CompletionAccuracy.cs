using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Eval;

/// <summary>Teacher-forced scores of a model on prompt/completion examples, over the completion tokens only.</summary>
/// <param name="Accuracy">Share of completion tokens (the answer and its end-of-text) the model's argmax predicts.</param>
/// <param name="Loss">Mean cross-entropy per completion token (nats).</param>
/// <param name="Tokens">Completion tokens scored.</param>
public sealed record CompletionScore(double Accuracy, double Loss, long Tokens);

public static class CompletionAccuracy
{
    /// <summary>
    /// Renders each example with <paramref name="template"/> (truncated to <paramref name="maxTokens"/>, the completion
    /// kept), runs one teacher-forced forward over the batch and scores the completion tokens. Deterministic.
    /// </summary>
    public static CompletionScore Score(CausalLM model, ITokenizer tokenizer, IReadOnlyList<SftExample> examples, int maxTokens,
        ChatTemplate? template = null)
    {
        if (examples.Count == 0) throw new ArgumentException("completion accuracy: no examples to score");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var sequences = SftPreparation.Prepare(examples, template ?? ChatTemplates.Plain, tokenizer, maxTokens, SftTruncation.KeepCompletion).Sequences;
        var rows = sequences.Select(s => (IReadOnlyList<SftTokens>)[s]).ToArray();
        var device = model.EmbeddingWeight.device;
        using var batch = SftBatch.Collate(rows, false, 0L, 0, device, tokenizer.PadId);
        var wasTraining = model.training;
        model.eval();
        try
        {
            var logits = model.Forward(batch.Input);
            var scored = batch.Target.ne(TokenLoss.IgnoreIndex);
            var hits = logits.argmax(-1).eq(batch.Target).logical_and(scored).sum().item<long>();
            var loss = TokenLoss.SummedCrossEntropy(logits, batch.Target).item<float>();
            return new CompletionScore((double)hits / batch.Normalizer, loss / batch.Normalizer, batch.Normalizer);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary><see cref="Score(CausalLM, ITokenizer, IReadOnlyList{SftExample}, int, ChatTemplate?)"/> of a checkpoint folder.</summary>
    public static CompletionScore Score(string checkpointDir, IReadOnlyList<SftExample> examples, int maxTokens, ChatTemplate? template = null)
    {
        var (model, tokenizer) = Checkpoint.Load(checkpointDir);
        using (model) return Score(model, tokenizer, examples, maxTokens, template);
    }
}
