namespace Research.Training;

/// <summary>
/// One-field updates, for callers without C#'s <c>with</c> (the F# DSL): <c>t.WithSteps(200)</c> is
/// <c>t with { Steps = 200 }</c>. Typed, so a misspelt setting does not compile.
/// </summary>
public sealed partial record TrainConfig
{
    public TrainConfig WithSteps(int steps) => this with { Steps = steps };
    public TrainConfig WithBatchSize(int batchSize) => this with { BatchSize = batchSize };
    public TrainConfig WithAccumulation(int micro) => this with { Accumulation = micro };
    public TrainConfig WithLearningRate(double lr) => this with { LearningRate = lr };
    public TrainConfig WithWarmupSteps(int steps) => this with { WarmupSteps = steps };
    public TrainConfig WithSchedule(LrSchedule schedule) => this with { Schedule = schedule };
    public TrainConfig WithWeightDecay(double decay) => this with { WeightDecay = decay };
    public TrainConfig WithGradClip(double clip) => this with { GradClip = clip };
    public TrainConfig WithLogEvery(int steps) => this with { LogEvery = steps };
    public TrainConfig WithEvalEvery(int steps) => this with { EvalEvery = steps };
    public TrainConfig WithCheckpointEvery(int steps) => this with { CheckpointEvery = steps };
    public TrainConfig WithPrecision(Precision precision) => this with { Precision = precision };
    public TrainConfig WithForceBf16(bool force) => this with { ForceBf16 = force };
    public TrainConfig WithLora(Models.LoraOptions? lora) => this with { Lora = lora };
    public TrainConfig WithLossChunkRows(int? rows) => this with { LossChunkRows = rows };
}
