using System.Text.Json.Serialization;
using Research.Data;
using Research.Stages.Online;

namespace Research.Stages.Reward;

/// <summary>
/// pairs: preference-data distillation (FinDAP). The parent policy samples <see cref="Candidates"/> completions of every prompt,
/// a judge scores them (a reward model given as the stage's second parent, and/or registered rewards, summed with their
/// weights), and the best and the worst candidate become a chosen/rejected pair, written as data (pairs.jsonl, which an align
/// stage after this one reads) and as rows of the run store. The stage's checkpoint is the policy, unchanged.
/// </summary>
public sealed record PairsOptions : IStageOptions, IReadsFiles
{
    [JsonIgnore] public string Kind => "pairs";

    /// <summary>JSONL of {"prompt", "answer"} (<see cref="PromptData"/>; the answer only feeds verifiable rewards); its SHA-256 is part of the key.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Completions sampled per prompt (N).</summary>
    public int Candidates { get; init; } = 4;
    public int MaxNewTokens { get; init; } = 32;
    public double Temperature { get; init; } = 1.0;
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    /// <summary>Registered rewards in the judge's sum, by name and weight (their versions enter the key).</summary>
    public RewardTerm[] Judge { get; init; } = [];
    /// <summary>The weight of the reward model (the second parent) in the judge's sum; unused without one.</summary>
    public double ModelWeight { get; init; } = 1.0;
    /// <summary>A pair is kept only when best − worst exceeds this gap; 0 drops exact ties only.</summary>
    public double MinGap { get; init; }
    public int[] StopTokens { get; init; } = [];

    public string FilesFingerprint() => Judge.Length == 0 ? SftData.FileFingerprint(DataPath) : $"{SftData.FileFingerprint(DataPath)}|{Rewards.Fingerprint(Judge)}";

    public PairsOptions WithCandidates(int n) => this with { Candidates = n };
    public PairsOptions WithMaxNewTokens(int n) => this with { MaxNewTokens = n };
    public PairsOptions WithTemperature(double t) => this with { Temperature = t };
    public PairsOptions WithSampling(int topK, double topP) => this with { TopK = topK, TopP = topP };
    public PairsOptions WithJudge(params RewardTerm[] terms) => this with { Judge = terms };
    public PairsOptions WithModelWeight(double w) => this with { ModelWeight = w };
    public PairsOptions WithMinGap(double gap) => this with { MinGap = gap };

    public PairsOptions Validate(bool judgeModel)
    {
        if (string.IsNullOrWhiteSpace(DataPath)) throw new ArgumentException("pairs: data_path is required (a JSONL file of {\"prompt\"} objects)");
        if (Candidates < 2) throw new ArgumentException($"pairs: candidates must be at least 2 (got {Candidates}): a pair is the best and the worst of them");
        if (MaxNewTokens < 1) throw new ArgumentException($"pairs: max_new_tokens must be at least 1 (got {MaxNewTokens})");
        if (!(Temperature > 0)) throw new ArgumentException($"pairs: temperature must be > 0 (got {Temperature}); the candidates are samples");
        if (!(MinGap >= 0)) throw new ArgumentException($"pairs: min_gap must be >= 0 (got {MinGap})");
        if (!judgeModel && Judge.Length == 0)
            throw new ArgumentException("pairs: no judge: give a reward model as the stage's second parent (Pairs.judgeModel) or registered rewards (Pairs.judge)");
        foreach (var t in Judge) Rewards.Named(t.Name);
        return this;
    }
}
