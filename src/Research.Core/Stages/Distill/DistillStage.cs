using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// distill: knowledge distillation of a student (parent 1) from a teacher (parent 2) that share a tokenizer.
/// On a corpus (data input 1, no <see cref="DataPath"/>): token-level (1 - kd_ratio) CE + kd_ratio D(teacher, student) on
/// packed blocks, D the generalised JSD by default (TRL GKD; beta 0 = forward KL, 1 = reverse KL), the teacher in memory.
/// On prompt/completion data (<see cref="DataPath"/>): the same loss on the completions, plus on-policy batches
/// (<see cref="OnPolicyLambda"/>), an on-disk teacher top-K cache (<see cref="TeacherTopK"/>), or sequence-level KD
/// (<see cref="SequenceLevel"/>); see <see cref="DistillSftObjective"/>, <see cref="TeacherTopKCache"/>, <see cref="SequenceKd"/>.
/// </summary>
public sealed partial record DistillStageOptions : IReadsFiles
{
    public string FilesFingerprint() => string.IsNullOrEmpty(DataPath) ? "" : SftData.FileFingerprint(DataPath);

    /// <summary>JSONL of prompt/completion or messages examples (as tune reads); empty = distil on the corpus.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Chat template for conversational examples ("plain" or "chatml").</summary>
    public string Template { get; init; } = "plain";
    /// <summary>GKD's lambda: the probability that a micro-batch uses the student's own sampled completions (scored by the teacher). 0 = off-policy only.</summary>
    public double OnPolicyLambda { get; init; }
    /// <summary>Most tokens the student (on-policy) or teacher (sequence-level) generates per prompt.</summary>
    public int MaxNewTokens { get; init; } = 32;
    /// <summary>Temperature of the student's on-policy samples (TRL GKD default 0.9; 1 = the model's own distribution).</summary>
    public double SampleTemperature { get; init; } = 1.0;
    /// <summary>Sequence-level KD: the teacher answers every training prompt, the student is tuned on those answers.</summary>
    public bool SequenceLevel { get; init; }
    /// <summary>Temperature of the teacher's sequence-level answers; 0 = greedy.</summary>
    public double TeacherTemperature { get; init; }
    /// <summary>K &gt; 0: the teacher's top-K logits are computed once into teacher_topk.safetensors and training reads them (the
    /// teacher is not in memory with the student); the loss is the top-K form. 0 = the live teacher's full distribution.</summary>
    public int TeacherTopK { get; init; }

    public DistillStageOptions Validate()
    {
        Loss.Validate();
        if (OnPolicyLambda is < 0 or > 1) throw new ArgumentException($"distill: on_policy_lambda must be in [0, 1] (got {OnPolicyLambda})");
        if (MaxNewTokens < 1) throw new ArgumentException($"distill: max_new_tokens must be >= 1 (got {MaxNewTokens})");
        if (!(SampleTemperature >= 0) || !(TeacherTemperature >= 0)) throw new ArgumentException("distill: sample_temperature and teacher_temperature must be >= 0 (0 = greedy)");
        if (TeacherTopK < 0) throw new ArgumentException($"distill: teacher_top_k must be >= 0 (got {TeacherTopK}); 0 = live teacher");
        var sft = OnPolicyLambda > 0 || SequenceLevel || TeacherTopK > 0;
        if (sft && string.IsNullOrEmpty(DataPath))
            throw new ArgumentException("distill: on_policy_lambda, sequence_level and teacher_top_k need prompts: set data_path to a prompt/completion JSONL");
        if (OnPolicyLambda > 0 && TeacherTopK > 0)
            throw new ArgumentException("distill: on-policy batches need the live teacher to score the student's samples; set teacher_top_k to 0 or on_policy_lambda to 0");
        if (SequenceLevel && (OnPolicyLambda > 0 || TeacherTopK > 0))
            throw new ArgumentException("distill: sequence_level tunes on the teacher's answers; it takes neither on_policy_lambda nor teacher_top_k");
        return this;
    }

    public DistillOptions Loss { get; init; } = new();
    public int BlockLength { get; init; } = 128;
    public double ValidationFraction { get; init; } = 0.04;
    public TrainConfig Train { get; init; } = new() { Steps = 200, LearningRate = 1e-3, WarmupSteps = 10, EvalEvery = 100, CheckpointEvery = 40 };
}

/// <summary>Language-model batches of the corpus, scored against the teacher's distribution.</summary>
public sealed class DistillObjective(MixtureLmObjective batches, CausalLM teacher, DistillOptions options) : IObjective<LmBatch>
{
    public string Kind => "distill";
    public string Fingerprint => $"{batches.Fingerprint}|{options}";

    public LmBatch Batch(long step, int micro, TrainConfig config, Device device) => batches.Batch(step, micro, config, device);

    public Tensor Loss(CausalLM model, LmBatch batch, MetricSink metrics)
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
    public Type Options => typeof(DistillStageOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((DistillStageOptions)config).Validate();
        if (ctx.Parents.Count != 2)
            throw new ArgumentException($"stage '{ctx.Name}': distill needs two parents, the student and then the teacher (got {ctx.Parents.Count})");
        CheckSameTokenizer(ctx.Name, ctx.Parents[0], ctx.Parents[1]);
        if (!string.IsNullOrEmpty(o.DataPath)) return ExecuteOnExamples(ctx, o);
        var (student, tokenizer) = Checkpoint.Load(ctx.Parents[0], ctx.Device);
        var (teacher, _) = Checkpoint.Load(ctx.Parents[1], ctx.Device);
        using (student)
        using (teacher)
        {
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

    /// <summary>
    /// Teacher and student must read the same token ids: same tokenizer name and vocabulary size, and the same number of
    /// logits. Checked from config.json and the tokenizer files alone, before any weights are loaded.
    /// </summary>
    public static void CheckSameTokenizer(string stage, string studentDir, string teacherDir)
    {
        var (st, tt) = (Tokenizers.Load(studentDir), Tokenizers.Load(teacherDir));
        var sc = ModelConfig.Load(Path.Combine(studentDir, Checkpoint.ConfigFile));
        var tc = ModelConfig.Load(Path.Combine(teacherDir, Checkpoint.ConfigFile));
        if (Tokenizers.Mismatch(st, tt) is { } why)
            throw new InvalidDataException($"stage '{stage}': teacher ({teacherDir}) and student ({studentDir}) must share a tokenizer: {why}");
        if (sc.VocabSize != tc.VocabSize)
            throw new InvalidDataException(
                $"stage '{stage}': teacher and student must share a tokenizer and its logits; the teacher ({teacherDir}, {tc.ModelType}) has {tc.VocabSize} " +
                $"logits but the student ({studentDir}, {sc.ModelType}) {sc.VocabSize} (config.json vocab_size), and distillation compares them token by token");
    }

    /// <summary>Distillation on prompt/completion examples: token-level (live teacher or top-K cache, optionally on-policy) or sequence-level.</summary>
    static IReadOnlyDictionary<string, double> ExecuteOnExamples(StageContext ctx, DistillStageOptions o)
    {
        var tokenizer = Tokenizers.Load(ctx.Parents[0]);
        var template = ChatTemplates.Resolve(o.Template, tokenizer);
        var data = SftPreparation.Load(o.DataPath, o.ValidationFraction, ctx.Seed, template, tokenizer, o.BlockLength, SftTruncation.KeepCompletion);
        var (sha, train, val) = (data.Sha256, data.Train, data.Validation);
        var trainConfig = o.Train with { Seed = ctx.Seed };
        Func<CausalLM, IReadOnlyDictionary<string, double>>? validate =
            val.Sequences.Count > 0 ? m => Tune.Validate(m, val.Sequences, trainConfig.BatchSize, tokenizer.PadId) : null;
        Directory.CreateDirectory(ctx.Directory);

        if (o.SequenceLevel)
        {
            // The teacher is loaded, answers, and is gone before the student is loaded.
            var path = SequenceKd.Generate(ctx.Parents[1], ctx.Directory, train.Sequences, tokenizer, o, ctx.Seed, ctx.Device, ctx.Log);
            var answers = SftPreparation.Prepare(SftData.Read(path), ChatTemplates.Plain, tokenizer, o.BlockLength + 1, SftTruncation.KeepCompletion);
            var tune = new TuneOptions { BlockLength = o.BlockLength, Packing = false, Template = "plain", ValidationFraction = 0, Train = trainConfig };
            var objective = new TuneObjective(answers.Sequences, tune, SftData.FileFingerprint(path));
            var (model, _) = Checkpoint.Load(ctx.Parents[0], ctx.Device);
            using (model) return Trainer.Run(model, tokenizer, objective, trainConfig, ctx.Directory, validate, ctx.Log).LastMetrics;
        }

        using var cache = o.TeacherTopK > 0
            ? TeacherTopKCache.Prepare(ctx.Parents[1], ctx.Directory, train.Sequences, o.TeacherTopK, ctx.Device, trainConfig.BatchSize, tokenizer.PadId, ctx.Log)
            : null;
        var (student, _) = Checkpoint.Load(ctx.Parents[0], ctx.Device);
        CausalLM? teacher = null;
        try
        {
            if (cache is null)
            {
                teacher = Checkpoint.Load(ctx.Parents[1], ctx.Device).Model;
                teacher.eval();
                foreach (var p in teacher.parameters()) p.requires_grad = false;
            }
            var objective = new DistillSftObjective(train.Sequences, student, teacher, cache, o, ctx.Seed, tokenizer, sha);
            return Trainer.Run(student, tokenizer, objective, trainConfig, ctx.Directory, validate, ctx.Log).LastMetrics;
        }
        finally
        {
            teacher?.Dispose();
            student.Dispose();
        }
    }
}
