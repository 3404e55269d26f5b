using System.Text.Json.Serialization;
using Research.Training;

namespace Research.Stages.Uda;

/// <summary>Which labelled examples a classify stage learns from: the source (the baseline) or the target (the oracle upper bound).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ClassifyOn>))]
public enum ClassifyOn
{
    Source,
    /// <summary>The target's own labels: the upper bound every UDA result is read against; never an adaptation method.</summary>
    Target,
}

/// <summary>The adaptation term a uda stage adds to the source classification loss.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<UdaMethod>))]
public enum UdaMethod
{
    /// <summary>Domain-adversarial training: a domain discriminator behind a gradient reversal layer.</summary>
    Dann,
    /// <summary>Deep CORAL: match the feature covariances.</summary>
    Coral,
    /// <summary>Multi-kernel MMD between source and target features (DAN).</summary>
    Mmd,
    /// <summary>M3SDA moment matching across the source domains and the target.</summary>
    M3sda,
    /// <summary>FixMatch-style self-training: confident pseudo-labels of a weak view train a strong view.</summary>
    SelfTraining,
    /// <summary>AdaMatch: relative threshold, distribution alignment, warm-up of the unlabelled term.</summary>
    AdaMatch,
}

/// <summary>What every classification stage reads: the JSONL file (<see cref="ClassificationData"/>) and its domains.</summary>
public interface IClassificationData
{
    string DataPath { get; }
    string SourceDomain { get; }
    string TargetDomain { get; }
    int MaxLength { get; }
}

/// <summary>
/// classify: supervised training of a sequence-classification head (and the whole model) on the labelled examples of the
/// source domain, or of the target domain for the oracle. A parent without a head gets one over the labels of the data.
/// </summary>
public sealed record ClassifyOptions : ITrainedOptions, IReadsFiles, IClassificationData
{
    [JsonIgnore] public string Kind => "classify";
    /// <summary>JSONL of {"text", "label", "domain"}; its SHA-256 is part of the key.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Domain of the labelled source; "general" also selects "general/animals" and the like.</summary>
    public string SourceDomain { get; init; } = "general";
    public string TargetDomain { get; init; } = "finance";
    public ClassifyOn On { get; init; } = ClassifyOn.Source;
    /// <summary>Tokens per example (BOS included); longer texts keep their start and are counted in the report.</summary>
    public int MaxLength { get; init; } = 128;
    /// <summary>No weight decay and a short warmup: the head starts at random and the body is already trained.</summary>
    public TrainConfig Train { get; init; } = new() { Steps = 150, BatchSize = 16, LearningRate = 1e-3, WeightDecay = 0.0, WarmupSteps = 10, EvalEvery = 0, CheckpointEvery = 50, LogEvery = 10 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public string FilesFingerprint() => ClassificationData.FileFingerprint(DataPath);
    public ClassifyOptions WithDomains(string source, string target) => this with { SourceDomain = source, TargetDomain = target };
    public ClassifyOptions WithOn(ClassifyOn on) => this with { On = on };
    public ClassifyOptions WithMaxLength(int tokens) => this with { MaxLength = tokens };

    public ClassifyOptions Validate()
    {
        UdaOptions.CheckData(Kind, this);
        return this;
    }
}

/// <summary>
/// uda: the source classification loss plus one adaptation term on unlabelled target text (<see cref="UdaMethod"/>), from a
/// parent classifier (or a language model, which gets a head). Target labels in the file are never read.
/// </summary>
public sealed record UdaOptions : ITrainedOptions, IReadsFiles, IClassificationData
{
    [JsonIgnore] public string Kind => "uda";
    public string DataPath { get; init; } = "";
    public string SourceDomain { get; init; } = "general";
    public string TargetDomain { get; init; } = "finance";
    public int MaxLength { get; init; } = 128;
    public UdaMethod Method { get; init; } = UdaMethod.Dann;
    /// <summary>Weight of the adaptation term (DANN's discriminator loss, CORAL, MMD, moments, the unlabelled term).</summary>
    public double Weight { get; init; } = 1.0;
    /// <summary>DANN: the schedule's gamma in 2 / (1 + exp(-gamma p)) - 1 (10 in the paper).</summary>
    public double DannGamma { get; init; } = 10.0;
    /// <summary>DANN: hidden width of the two-layer domain discriminator.</summary>
    public int DiscriminatorHidden { get; init; } = 64;
    /// <summary>MMD: kernel bandwidths as multiples of the batch's mean squared distance (DAN's family of 5 Gaussians).</summary>
    public double[] KernelMultipliers { get; init; } = [0.25, 0.5, 1, 2, 4];
    /// <summary>M3SDA: the highest moment matched (2 in the paper).</summary>
    public int MomentOrder { get; init; } = 2;
    /// <summary>Self-training: the confidence a pseudo-label needs (FixMatch's 0.95); AdaMatch: tau of the relative threshold (0.9).</summary>
    public double Threshold { get; init; } = 0.95;
    /// <summary>Strong view: share of tokens deleted (token dropout).</summary>
    public double StrongDropout { get; init; } = 0.1;
    /// <summary>Strong view: share of the text covered by one span replaced by padding tokens (span masking).</summary>
    public double StrongSpan { get; init; } = 0.15;
    public TrainConfig Train { get; init; } = new() { Steps = 150, BatchSize = 16, LearningRate = 5e-4, WeightDecay = 0.0, WarmupSteps = 10, EvalEvery = 0, CheckpointEvery = 50, LogEvery = 10 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public string FilesFingerprint() => ClassificationData.FileFingerprint(DataPath);
    public UdaOptions WithMethod(UdaMethod method) => this with { Method = method, Threshold = method == UdaMethod.AdaMatch ? 0.9 : Threshold };
    public UdaOptions WithWeight(double w) => this with { Weight = w };
    public UdaOptions WithThreshold(double t) => this with { Threshold = t };
    public UdaOptions WithDomains(string source, string target) => this with { SourceDomain = source, TargetDomain = target };
    public UdaOptions WithAugmentation(double dropout, double span) => this with { StrongDropout = dropout, StrongSpan = span };
    public UdaOptions WithMomentOrder(int k) => this with { MomentOrder = k };
    public UdaOptions WithMaxLength(int tokens) => this with { MaxLength = tokens };

    public UdaOptions Validate()
    {
        CheckData(Kind, this);
        void Need(bool ok, string what) { if (!ok) throw new ArgumentException($"uda: {what}"); }
        Need(Weight >= 0 && double.IsFinite(Weight), $"weight must be a finite number >= 0 (got {Weight})");
        Need(DannGamma > 0 && double.IsFinite(DannGamma), $"dann_gamma must be > 0 (got {DannGamma})");
        Need(DiscriminatorHidden >= 1, $"discriminator_hidden must be >= 1 (got {DiscriminatorHidden})");
        Need(KernelMultipliers.Length > 0 && KernelMultipliers.All(m => m > 0 && double.IsFinite(m)), $"kernel_multipliers must be positive numbers (got [{string.Join(", ", KernelMultipliers)}])");
        Need(MomentOrder is >= 1 and <= 8, $"moment_order must be in [1, 8] (got {MomentOrder})");
        Need(Threshold is > 0 and <= 1, $"threshold must be in (0, 1] (got {Threshold})");
        Need(StrongDropout is >= 0 and < 1 && StrongSpan is >= 0 and < 1, $"strong_dropout and strong_span must be in [0, 1) (got {StrongDropout}, {StrongSpan})");
        Need(Train.BatchSize >= 2, $"batch_size must be at least 2 (got {Train.BatchSize}): feature statistics need two rows per domain");
        return this;
    }

    internal static void CheckData(string kind, IClassificationData o)
    {
        if (string.IsNullOrWhiteSpace(o.DataPath)) throw new ArgumentException($"{kind}: data_path is required (a JSONL file of {{\"text\", \"label\", \"domain\"}} objects)");
        if (string.IsNullOrWhiteSpace(o.SourceDomain) || string.IsNullOrWhiteSpace(o.TargetDomain)) throw new ArgumentException($"{kind}: source_domain and target_domain are required");
        if (ClassificationData.InDomain(o.TargetDomain, o.SourceDomain) || ClassificationData.InDomain(o.SourceDomain, o.TargetDomain))
            throw new ArgumentException($"{kind}: source domain \"{o.SourceDomain}\" and target domain \"{o.TargetDomain}\" overlap");
        if (o.MaxLength < 2) throw new ArgumentException($"{kind}: max_length must be at least 2 (got {o.MaxLength})");
    }
}

/// <summary>
/// tent: test-time entropy minimisation (Wang et al. 2021) on the unlabelled target stream, updating only the normalisation
/// weights (RMSNorm's scale; LayerNorm's scale and bias). This is TENT's continual (online) setting: one model adapts along
/// the whole stream. The episodic setting, which resets after every batch, is an evaluation (<see cref="Pipelines.ClassificationSuite"/>).
/// </summary>
public sealed record TentOptions : ITrainedOptions, IReadsFiles, IClassificationData
{
    [JsonIgnore] public string Kind => "tent";
    public string DataPath { get; init; } = "";
    /// <summary>Not read by tent (it sees no labels); kept so the same data options describe every classification stage.</summary>
    public string SourceDomain { get; init; } = "general";
    public string TargetDomain { get; init; } = "finance";
    public int MaxLength { get; init; } = 128;
    /// <summary>One pass over a short stream: few steps, the paper's small learning rate, no decay or warmup.</summary>
    public TrainConfig Train { get; init; } = new() { Steps = 20, BatchSize = 16, LearningRate = 1e-3, WeightDecay = 0.0, WarmupSteps = 0, Schedule = LrSchedule.Constant, EvalEvery = 0, CheckpointEvery = 10, LogEvery = 5, GradClip = 0 };

    public ITrainedOptions WithTrain(TrainConfig train) => this with { Train = train };
    public string FilesFingerprint() => ClassificationData.FileFingerprint(DataPath);
    public TentOptions WithDomains(string source, string target) => this with { SourceDomain = source, TargetDomain = target };

    public TentOptions Validate()
    {
        UdaOptions.CheckData(Kind, this);
        if (Train.Lora is not null) throw new ArgumentException("tent: LoRA is not supported; TENT updates the normalisation weights only, which LoRA would freeze");
        return this;
    }
}
