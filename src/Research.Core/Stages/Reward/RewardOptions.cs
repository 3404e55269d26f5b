using System.Text.Json.Serialization;
using Research.Data;
using Research.Training;

namespace Research.Stages.Reward;

/// <summary>
/// reward: a reward model trained on preference pairs with the Bradley–Terry loss (<see cref="RewardLosses"/>) from the
/// parent decoder, which gets a one-label <c>score</c> head (or keeps its own); evaluated by held-out pair accuracy.
/// </summary>
public sealed record RewardOptions : ITrainedOptions, IReadsFiles
{
    [JsonIgnore] public string Kind => "reward";

    /// <summary>The paired preference JSONL the align stage reads (prompt/chosen/rejected), optionally with "margin"; its SHA-256 is part of the key.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Tokens of prompt + completion per row (capped at the model's max_position_embeddings).</summary>
    public int MaxLength { get; init; } = 256;
    /// <summary>A prompt is left-truncated to this many tokens when a row would not fit (as in align).</summary>
    public int MaxPromptLength { get; init; } = 128;
    /// <summary>Share of pairs held out for pair accuracy (seeded, as align's split: the same pairs for the same seed).</summary>
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>BatchSize counts pairs (2 rows each). TRL's RewardConfig: lr 1e-5 on large models; here the micro models' fine-tuning scale, no decay.</summary>
    public TrainConfig Train { get; init; } = new() { Steps = 100, BatchSize = 8, LearningRate = 5e-4, WarmupSteps = 5, WeightDecay = 0.0, LogEvery = 5, EvalEvery = 50, CheckpointEvery = 50 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public string FilesFingerprint() => SftData.FileFingerprint(DataPath);
    public RewardOptions WithMaxLength(int tokens) => this with { MaxLength = tokens };
    public RewardOptions WithValidationFraction(double f) => this with { ValidationFraction = f };

    public RewardOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(DataPath)) throw new ArgumentException("reward: data_path is required (a JSONL file of {\"prompt\", \"chosen\", \"rejected\"} objects)");
        if (MaxLength < 2 || MaxPromptLength < 1) throw new ArgumentException($"reward: max_length must be >= 2 and max_prompt_length >= 1 (got {MaxLength}, {MaxPromptLength})");
        if (!(ValidationFraction is >= 0 and < 1)) throw new ArgumentException($"reward: validation_fraction must be in [0, 1) (got {ValidationFraction})");
        return this;
    }
}
