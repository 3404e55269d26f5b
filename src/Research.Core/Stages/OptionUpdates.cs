using System.Text.Json.Serialization;
using Research.Data;
using Research.Models;
using Research.Training;

namespace Research.Stages;

/// <summary>
/// The options of one kind of stage: the kind a stage is follows from its options' type, so a stage cannot say one
/// kind and carry another's options, and the executor that runs it is found from the same type.
/// </summary>
public interface IStageOptions
{
    /// <summary>The kind's name (in the stage key, the node directory and the run store).</summary>
    string Kind { get; }
}

/// <summary>
/// The options of a stage that trains: what the DSL's training modifiers (steps, learning rate, LoRA, bf16...) change,
/// whatever the kind of stage.
/// </summary>
public interface ITrainedOptions : IStageOptions
{
    TrainConfig Train { get; }
    /// <summary>A copy with other training settings (the same options type).</summary>
    ITrainedOptions WithTrain(TrainConfig train);
}

/// <summary>Options with a block length (tokens per training row): pretrain, adapt, tune, distill, doremi.</summary>
public interface IBlockOptions : IStageOptions
{
    int BlockLength { get; }
    IBlockOptions WithBlockLength(int tokens);
}

// One-field updates, for callers without C#'s `with` (the F# DSL): typed, so a misspelt setting does not compile.

public sealed partial record PretrainConfig : ITrainedOptions, IBlockOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "pretrain";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public IBlockOptions WithBlockLength(int tokens) => this with { BlockLength = tokens };
    public PretrainConfig WithTokenizer(string nameOrDirectory) => this with { Tokenizer = nameOrDirectory };
}

public sealed partial record AdaptOptions : ITrainedOptions, IBlockOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "adapt";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public IBlockOptions WithBlockLength(int tokens) => this with { BlockLength = tokens };
    public AdaptOptions WithReplay(double share) => this with { Replay = share };
    public AdaptOptions WithDomains(DomainMixtureOptions? domains) => this with { Domains = domains };
}

public sealed partial record TuneOptions : ITrainedOptions, IBlockOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "tune";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public IBlockOptions WithBlockLength(int tokens) => this with { BlockLength = tokens };
    public TuneOptions WithTemplate(string template) => this with { Template = template };
    public TuneOptions WithPacking(bool packing) => this with { Packing = packing };
    public TuneOptions WithNeftuneAlpha(double alpha) => this with { NeftuneAlpha = alpha };
    public TuneOptions WithValidationFraction(double fraction) => this with { ValidationFraction = fraction };
}

public sealed partial record AlignOptions : ITrainedOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "align";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public AlignOptions WithPreference(PreferenceOptions preference) => this with { Preference = preference };
    public AlignOptions WithMode(AlignMode mode) => this with { Mode = mode };
    public AlignOptions WithTemplate(string? template) => this with { Template = template };
    public AlignOptions WithMaxLength(int tokens) => this with { MaxLength = tokens };
    public AlignOptions WithMaxPromptLength(int tokens) => this with { MaxPromptLength = tokens };
    public AlignOptions WithValidationFraction(double fraction) => this with { ValidationFraction = fraction };
    public AlignOptions WithGenerations(int prompts, int tokens) => this with { Generations = prompts, GenerationTokens = tokens };
    public AlignOptions WithSamples(int perPrompt, double temperature, double topP) =>
        this with { SamplesPerPrompt = perPrompt, SampleTemperature = temperature, SampleTopP = topP };
}

public sealed partial record PreferenceOptions
{
    /// <summary>One loss (weight 1) with its beta; the other settings kept.</summary>
    public PreferenceOptions WithLoss(PreferenceLoss loss, double beta) => this with { Losses = [new(loss)], Beta = beta };
    public PreferenceOptions WithLosses(IReadOnlyList<WeightedPreferenceLoss> losses) => this with { Losses = losses };
    public PreferenceOptions WithBeta(double beta) => this with { Beta = beta };
    public PreferenceOptions WithLabelSmoothing(double eps) => this with { LabelSmoothing = eps };
    public PreferenceOptions WithSftWeight(double weight) => this with { SftWeight = weight };
    public PreferenceOptions WithSimpoGamma(double gamma) => this with { SimpoGamma = gamma };
    public PreferenceOptions WithOrpoLambda(double lambda) => this with { OrpoLambda = lambda };
    public PreferenceOptions WithKtoWeights(double desirable, double undesirable) => this with { DesirableWeight = desirable, UndesirableWeight = undesirable };
}

public sealed partial record DistillStageOptions : ITrainedOptions, IBlockOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "distill";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public IBlockOptions WithBlockLength(int tokens) => this with { BlockLength = tokens };
    public DistillStageOptions WithLoss(DistillOptions loss) => this with { Loss = loss };
    public DistillStageOptions WithTemplate(string template) => this with { Template = template };
    public DistillStageOptions WithOnPolicy(double lambda) => this with { OnPolicyLambda = lambda };
    public DistillStageOptions WithSequenceLevel(bool on) => this with { SequenceLevel = on };
    public DistillStageOptions WithTeacherTopK(int k) => this with { TeacherTopK = k };
    public DistillStageOptions WithMaxNewTokens(int tokens) => this with { MaxNewTokens = tokens };
}

public sealed partial record DistillOptions
{
    public DistillOptions WithKdRatio(double ratio) => this with { KdRatio = ratio };
    public DistillOptions WithDivergence(Divergence divergence, double beta) => this with { Divergence = divergence, Beta = beta };
    public DistillOptions WithTemperature(double temperature) => this with { Temperature = temperature };
}

public sealed partial record DoReMiOptions : ITrainedOptions, IBlockOptions, IStageOptions
{
    [JsonIgnore] public string Kind => "doremi";
    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public IBlockOptions WithBlockLength(int tokens) => this with { BlockLength = tokens };
}

public sealed partial record DomainMixtureOptions
{
    public DomainMixtureOptions WithWeights(double[] weights) => this with { Weights = weights };
    public DomainMixtureOptions WithTemperature(double temperature) => this with { Temperature = temperature };
    public DomainMixtureOptions WithWeightsFromParent(bool on) => this with { WeightsFromParent = on };
    public DomainMixtureOptions WithPhases(MixturePhase[] phases) => this with { Phases = phases };
    public DomainMixtureOptions WithLinear(bool on) => this with { Linear = on };
    public DomainMixtureOptions WithUpsampling(string domain, double last, double factor) =>
        this with { UpsampleDomain = domain, UpsampleLast = last, UpsampleFactor = factor };
}

public sealed partial record MergeStageOptions : IStageOptions
{
    [JsonIgnore] public string Kind => "merge";
    public MergeStageOptions WithWeights(double[] weights) => this with { Weights = weights };
}

public sealed partial record CheckpointSource : IStageOptions
{
    [JsonIgnore] public string Kind => "checkpoint";
}
