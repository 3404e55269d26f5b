using System.Text.Json.Serialization;
using Research.Data;
using Research.Training;

namespace Research.Stages.Online;

/// <summary>
/// grpo: on-policy training from the parent with a verifiable reward. Each step samples <see cref="PromptsPerStep"/>
/// prompts, <see cref="Group"/> completions each (<see cref="Research.Models.Rollouts"/>), scores them, turns the rewards
/// into group-relative advantages and takes <see cref="Iterations"/> optimiser steps of the clipped surrogate on them
/// (<see cref="GrpoLosses"/>), the old policy being the one that sampled. With <see cref="Baseline"/> leave-one-out it is
/// RLOO; with a prefix schedule, the rollouts continue a demonstration's prefix (Prefix-RFT / UFT).
/// </summary>
public sealed record GrpoOptions : ITrainedOptions, IReadsFiles
{
    [JsonIgnore] public string Kind => "grpo";

    /// <summary>JSONL of {"prompt", "answer"} (<see cref="PromptData"/>); its SHA-256 is part of the key.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Terms of the reward, by registered name (<see cref="Rewards"/>), summed with their weights.</summary>
    public RewardTerm[] Reward { get; init; } = [new("exact_answer")];
    /// <summary>
    /// The weight of a reward model, the stage's second parent, in the reward's sum (null: none). Absent from the config
    /// when null, so the keys of stages without one stay as they were; the model's weights are in the key through the parent's.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? RewardModelWeight { get; init; }
    /// <summary>Completions per prompt, G (at least 2: advantages are relative to the group).</summary>
    public int Group { get; init; } = 4;
    public int PromptsPerStep { get; init; } = 4;
    public int MaxNewTokens { get; init; } = 16;
    public double Temperature { get; init; } = 1.0;
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    public double EpsLow { get; init; } = 0.2;
    /// <summary>The upper clip range; above <see cref="EpsLow"/> is DAPO's clip-higher (0.28).</summary>
    public double EpsHigh { get; init; } = 0.2;
    /// <summary>KL penalty to the parent, frozen (k3 per token). 0, TRL's default, loads no reference model.</summary>
    public double Beta { get; init; }
    /// <summary>Optimiser steps on each batch of rollouts (TRL's num_iterations, the papers' mu); the train config's steps count them all.</summary>
    public int Iterations { get; init; } = 1;
    /// <summary>What a reward is compared with: the group's mean (GRPO) or the mean of the other G - 1 (RLOO, then unscaled).</summary>
    public Baseline Baseline { get; init; } = Baseline.GroupMean;
    public AdvantageScale Scale { get; init; } = AdvantageScale.Group;
    public LossAggregation Aggregation { get; init; } = LossAggregation.Grpo;
    /// <summary>Drop groups whose rewards are all equal (no signal), DAPO's dynamic sampling.</summary>
    public bool FilterUninformative { get; init; } = true;
    /// <summary>Prefix sampling: the share of each prompt's demonstration given before the rollout, at the first and last step (0, 0: off).</summary>
    public PrefixSchedule Prefix { get; init; } = new();
    /// <summary>Token ids that end a completion besides the tokenizer's EOS.</summary>
    public int[] StopTokens { get; init; } = [];
    public TrainConfig Train { get; init; } = new() { Steps = 50, BatchSize = 1, LearningRate = 1e-5, WeightDecay = 0.0, WarmupSteps = 0, EvalEvery = 0, CheckpointEvery = 10, LogEvery = 1 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    /// <summary>The prompt file's digest and each reward term's name, version and weight: a changed reward function re-runs the stage.</summary>
    public string FilesFingerprint() => $"{SftData.FileFingerprint(DataPath)}|{Rewards.Fingerprint(Reward)}";

    public GrpoOptions WithReward(params RewardTerm[] terms) => this with { Reward = terms };
    public GrpoOptions WithRewardModelWeight(double weight) => this with { RewardModelWeight = weight };
    public GrpoOptions WithGroup(int g) => this with { Group = g };
    public GrpoOptions WithPromptsPerStep(int n) => this with { PromptsPerStep = n };
    public GrpoOptions WithMaxNewTokens(int n) => this with { MaxNewTokens = n };
    public GrpoOptions WithTemperature(double t) => this with { Temperature = t };
    public GrpoOptions WithClip(double low, double high) => this with { EpsLow = low, EpsHigh = high };
    public GrpoOptions WithBeta(double beta) => this with { Beta = beta };
    public GrpoOptions WithScale(AdvantageScale scale) => this with { Scale = scale };
    public GrpoOptions WithAggregation(LossAggregation how) => this with { Aggregation = how };
    public GrpoOptions WithFilter(bool on) => this with { FilterUninformative = on };
    public GrpoOptions WithIterations(int mu) => this with { Iterations = mu };
    public GrpoOptions WithBaseline(Baseline b) => this with { Baseline = b };
    public GrpoOptions WithPrefix(PrefixSchedule p) => this with { Prefix = p };

    public GrpoOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(DataPath)) throw new ArgumentException("grpo: data_path is required (a JSONL file of {\"prompt\", \"answer\"} objects)");
        if (Group < 2) throw new ArgumentException($"grpo: group must be at least 2 (got {Group}): advantages are relative to the other completions of the prompt");
        if (PromptsPerStep < 1) throw new ArgumentException($"grpo: prompts_per_step must be at least 1 (got {PromptsPerStep})");
        if (MaxNewTokens < 1) throw new ArgumentException($"grpo: max_new_tokens must be at least 1 (got {MaxNewTokens})");
        if (!(Temperature > 0)) throw new ArgumentException($"grpo: temperature must be > 0 (got {Temperature})");
        if (!(EpsLow is >= 0 and < 1) || !(EpsHigh >= 0)) throw new ArgumentException($"grpo: clip ranges must be eps_low in [0, 1) and eps_high >= 0 (got {EpsLow}, {EpsHigh})");
        if (!(Beta >= 0)) throw new ArgumentException($"grpo: beta must be >= 0 (got {Beta})");
        if (Reward.Length == 0 && RewardModelWeight is null) throw new ArgumentException("grpo: reward needs at least one term (a registered reward, or a reward model)");
        if (RewardModelWeight is { } w && !double.IsFinite(w)) throw new ArgumentException($"grpo: reward_model_weight must be finite (got {w})");
        if (Iterations < 1) throw new ArgumentException($"grpo: iterations must be at least 1 (got {Iterations})");
        if (Train.Steps % Iterations != 0)
            throw new ArgumentException($"grpo: steps ({Train.Steps}) must be a multiple of iterations ({Iterations}): each batch of rollouts gets all its iterations");
        if (Baseline == Baseline.LeaveOneOut && Scale != AdvantageScale.None)
            throw new ArgumentException("grpo: RLOO's leave-one-out advantages are not scaled; use scale none (Grpo.rloo sets it)");
        Prefix.Validate();
        return this;
    }
}
