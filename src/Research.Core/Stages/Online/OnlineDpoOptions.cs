using System.Text.Json.Serialization;
using Research.Data;
using Research.Training;

namespace Research.Stages.Online;

/// <summary>
/// online_dpo: each step samples two completions of <see cref="PromptsPerStep"/> prompts from the current policy, lets the
/// reward judge them (the higher one is chosen; a tie teaches nothing and is left out), and takes a step of the offline
/// preference loss (<see cref="PreferenceLosses.Pairs"/>, DPO by default) against the stage's input, frozen, as the reference
/// (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback", arXiv:2402.04792; TRL's OnlineDPOTrainer).
/// </summary>
public sealed record OnlineDpoOptions : ITrainedOptions, IReadsFiles
{
    [JsonIgnore] public string Kind => "online_dpo";

    /// <summary>JSONL of {"prompt", "answer"} (<see cref="PromptData"/>); its SHA-256 is part of the key.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>The judge: registered rewards by name, summed with their weights.</summary>
    public RewardTerm[] Reward { get; init; } = [new("exact_answer")];
    /// <summary>
    /// The weight of a reward model, the stage's second parent, in the reward's sum (null: none). Absent from the config
    /// when null, so the keys of stages without one stay as they were; the model's weights are in the key through the parent's.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? RewardModelWeight { get; init; }
    /// <summary>Prompts (pairs) per step.</summary>
    public int PromptsPerStep { get; init; } = 4;
    public int MaxNewTokens { get; init; } = 16;
    /// <summary>Sampling temperature (TRL 0.9); the preference loss reads the policy's own, untempered log-probs.</summary>
    public double Temperature { get; init; } = 0.9;
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    /// <summary>The offline loss's options: beta 0.1 and sigmoid (DPO) by default, any paired loss (ipo, hinge...) as in align.</summary>
    public PreferenceOptions Preference { get; init; } = new();
    public int[] StopTokens { get; init; } = [];
    public TrainConfig Train { get; init; } = new() { Steps = 50, BatchSize = 1, LearningRate = 5e-7, WeightDecay = 0.0, WarmupSteps = 0, EvalEvery = 0, CheckpointEvery = 10, LogEvery = 1 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public string FilesFingerprint() => $"{SftData.FileFingerprint(DataPath)}|{Rewards.Fingerprint(Reward)}";

    public OnlineDpoOptions WithReward(params RewardTerm[] terms) => this with { Reward = terms };
    public OnlineDpoOptions WithRewardModelWeight(double weight) => this with { RewardModelWeight = weight };
    public OnlineDpoOptions WithPromptsPerStep(int n) => this with { PromptsPerStep = n };
    public OnlineDpoOptions WithMaxNewTokens(int n) => this with { MaxNewTokens = n };
    public OnlineDpoOptions WithTemperature(double t) => this with { Temperature = t };
    public OnlineDpoOptions WithPreference(PreferenceOptions p) => this with { Preference = p };

    public OnlineDpoOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(DataPath)) throw new ArgumentException("online_dpo: data_path is required (a JSONL file of {\"prompt\", \"answer\"} objects)");
        if (PromptsPerStep < 1) throw new ArgumentException($"online_dpo: prompts_per_step must be at least 1 (got {PromptsPerStep})");
        if (MaxNewTokens < 1) throw new ArgumentException($"online_dpo: max_new_tokens must be at least 1 (got {MaxNewTokens})");
        if (!(Temperature > 0)) throw new ArgumentException($"online_dpo: temperature must be > 0 (got {Temperature})");
        if (Reward.Length == 0 && RewardModelWeight is null) throw new ArgumentException("online_dpo: reward needs at least one term (a registered reward, or a reward model)");
        if (RewardModelWeight is { } w && !double.IsFinite(w)) throw new ArgumentException($"online_dpo: reward_model_weight must be finite (got {w})");
        Preference.Validate();
        return this;
    }
}
