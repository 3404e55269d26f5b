namespace Research

open Research.Pipelines
open Research.Stages.Uda

/// A UDA method with its paper's name, for `uda`: `classify data >=> uda Dann data`.
type UdaMethodName =
    | Dann
    | Coral
    | Mmd
    | M3sda
    | SelfTraining
    | AdaMatch

/// Classic unsupervised domain adaptation as steps: a classification head on any model, the source-only baseline and the
/// target oracle, the adaptation methods, and test-time adaptation. Every step reads one JSONL file of
/// {"text", "label", "domain"}; the source is "general" and the target "finance" unless `Uda.domains` says otherwise.
[<AutoOpen>]
module UdaDsl =
    let internal full (path: string) = System.IO.Path.GetFullPath path

    /// The source-only baseline: the parent gets a sequence-classification head (HF `score.weight`) trained on the source labels.
    let classify (jsonl: string) : Step =
        fun parent -> Stage("classify", ClassifyOptions(DataPath = full jsonl), [| parent |], [||])

    /// The target oracle (upper bound): the same, trained on the target's own labels.
    let classifyOracle (jsonl: string) : Step =
        fun parent -> Stage("oracle", ClassifyOptions(DataPath = full jsonl, On = ClassifyOn.Target), [| parent |], [||])

    /// Source classification plus a UDA method's term on the unlabelled target text; the stage is named after the method.
    let uda (method: UdaMethodName) (jsonl: string) : Step =
        let m, name =
            match method with
            | Dann -> UdaMethod.Dann, "dann"
            | Coral -> UdaMethod.Coral, "coral"
            | Mmd -> UdaMethod.Mmd, "mmd"
            | M3sda -> UdaMethod.M3sda, "m3sda"
            | SelfTraining -> UdaMethod.SelfTraining, "self_training"
            | AdaMatch -> UdaMethod.AdaMatch, "adamatch"
        fun parent -> Stage(name, UdaOptions(DataPath = full jsonl).WithMethod m, [| parent |], [||])

    /// DANN: a domain discriminator behind a gradient reversal layer (lambda schedule 2/(1+exp(-10p)) - 1).
    let dann (jsonl: string) : Step = uda Dann jsonl

    /// TENT, continual: entropy minimisation on the target stream, normalisation weights only.
    let tent (jsonl: string) : Step =
        fun parent -> Stage("tent", TentOptions(DataPath = full jsonl), [| parent |], [||])

/// Settings and suites of the classification stages.
module Uda =
    let private update (f: UdaOptions -> UdaOptions) (step: Step) : Step = step >> StageOps.update f

    /// Weight of the adaptation term.
    let weight (w: float) = update (fun o -> o.WithWeight w)
    /// Pseudo-label confidence (self-training), or AdaMatch's tau of the relative threshold.
    let threshold (t: float) = update (fun o -> o.WithThreshold t)
    /// The strong view: token dropout and span-mask shares.
    let augmentation (dropout: float) (span: float) = update (fun o -> o.WithAugmentation(dropout, span))
    /// M3SDA's highest moment.
    let momentOrder (k: int) = update (fun o -> o.WithMomentOrder k)

    /// Source and target domains of any classification step (a domain "general" also selects "general/animals" and the like).
    let domains (source: string) (target: string) (step: Step) : Step =
        step >> fun s ->
            match s.Config with
            | :? ClassifyOptions as o -> s.WithConfig(o.WithDomains(source, target))
            | :? UdaOptions as o -> s.WithConfig(o.WithDomains(source, target))
            | :? TentOptions as o -> s.WithConfig(o.WithDomains(source, target))
            | other -> invalidArg "step" $"stage '{s.Name}': {other.GetType().Name} is not a classification stage"

    /// The benchmark files (train.jsonl, test.jsonl) of the default world's sentiment shift: source general, target finance,
    /// `size` training examples per domain, `severity` in [0, 1] the share of target examples without the shared cue.
    let benchmarkIn (dir: string) (size: int) (severity: float) (seed: int) = ShiftBenchmark(size, severity, seed).Write dir

    /// The same in a temp folder named by its parameters.
    let benchmark (size: int) (severity: float) (seed: int) =
        let dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "research-uda", $"shift-{size}-{severity:R}-{seed}")
        benchmarkIn dir size severity seed

    /// Accuracy, macro-F1 and ECE (15 bins) on one domain of a JSONL file.
    let suite (name: string) (jsonl: string) (domain: string) = ClassificationSuite(name, UdaDsl.full jsonl, domain) :> ISuite

    /// The same plus ATC and average-confidence accuracy prediction, fit on the source examples of the same file.
    let suiteWithAtc (name: string) (jsonl: string) (domain: string) (sourceDomain: string) =
        ClassificationSuite(name, UdaDsl.full jsonl, domain, sourceDomain) :> ISuite

    /// Episodic TENT at evaluation: each batch adapts `steps` SGD steps (learning rate `lr`) from the evaluated weights, then is scored.
    let tentSuite (name: string) (jsonl: string) (domain: string) (steps: int) (lr: float) =
        ClassificationSuite(name, UdaDsl.full jsonl, domain, tentSteps = steps, tentLr = lr) :> ISuite
