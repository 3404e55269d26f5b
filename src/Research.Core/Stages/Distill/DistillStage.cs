using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// distill: token-level knowledge distillation of a student (parent 1) from a teacher (parent 2) on a
/// corpus (data input 1): (1 - kd_ratio) CE + kd_ratio D(teacher, student), D the generalised JSD by
/// default (TRL GKD; beta 0 = forward KL, 1 = reverse KL). The teacher stays in memory during training.
/// </summary>
public sealed record DistillStageOptions
{
    public DistillOptions Loss { get; init; } = new();
    public int BlockLength { get; init; } = 128;
    public double ValidationFraction { get; init; } = 0.04;
    public TrainConfig Train { get; init; } = new() { Steps = 200, LearningRate = 1e-3, WarmupSteps = 10, EvalEvery = 100, CheckpointEvery = 40 };
}

/// <summary>Language-model batches of the corpus, scored against the teacher's distribution.</summary>
public sealed class DistillObjective(MixtureLmObjective batches, LlamaForCausalLM teacher, DistillOptions options) : IObjective<LmBatch>
{
    public string Kind => "distill";
    public string Fingerprint => $"{batches.Fingerprint}|{options}";

    public LmBatch Batch(long step, int micro, TrainConfig config, Device device) => batches.Batch(step, micro, config, device);

    public Tensor Loss(LlamaForCausalLM model, LmBatch batch, MetricSink metrics)
    {
        Tensor teacherLogits;
        using (no_grad()) teacherLogits = teacher.Forward(batch.Input);                 // (B, T, V)
        var loss = DistillLosses.Mixed(model.Forward(batch.Input), teacherLogits, batch.Target, options);
        metrics.Add("ce", loss.CrossEntropy / batch.Normalizer);
        metrics.Add("kd", loss.Divergence / batch.Normalizer);
        return loss.Loss;
    }
}

public sealed class DistillExecutor : IStageExecutor
{
    public string Kind => "distill";

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = (DistillStageOptions)config;
        o.Loss.Validate();
        if (ctx.Parents.Count != 2)
            throw new ArgumentException($"stage '{ctx.Name}': distill needs two parents, the student and then the teacher (got {ctx.Parents.Count})");
        var (student, tokenizer) = Checkpoint.Load(ctx.Parents[0], ctx.Device);
        var (teacher, teacherTokenizer) = Checkpoint.Load(ctx.Parents[1], ctx.Device);
        using (student)
        using (teacher)
        {
            if (tokenizer.Name != teacherTokenizer.Name || student.Config.VocabSize != teacher.Config.VocabSize)
                throw new InvalidDataException(
                    $"stage '{ctx.Name}': teacher and student must share a tokenizer; the teacher ({ctx.Parents[1]}) uses '{teacherTokenizer.Name}' " +
                    $"with {teacher.Config.VocabSize} logits, the student ({ctx.Parents[0]}) '{tokenizer.Name}' with {student.Config.VocabSize}");
            teacher.eval();
            foreach (var p in teacher.parameters()) p.requires_grad = false;
            var corpus = ctx.DataAt(0, "a corpus");
            var (train, val) = corpus.Split(o.ValidationFraction, (int)ctx.Seed);
            var blocks = Packing.Pack(train, tokenizer, o.BlockLength);
            var trainConfig = o.Train with { Seed = ctx.Seed };
            var objective = new DistillObjective(Adapt.Pretrain(blocks, trainConfig, corpus.Fingerprint, "distill"), teacher, o.Loss);
            return Trainer.Run(student, tokenizer, objective, trainConfig, ctx.Directory, LmValidation.On(tokenizer, o.BlockLength, (corpus.Name, val)), ctx.Log).LastMetrics;
        }
    }
}
