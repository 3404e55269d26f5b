namespace Research

open Research.Models
open Research.Pipelines
open Research.Stages
open Research.Training

/// What an adapt stage trains on: a domain corpus, optionally mixed with replayed general text.
type Mix = { Domain: DataSource; General: DataSource option; Replay: float }

/// A step of a pipeline: from the stage it starts from, the stage it makes.
type Step = Stage -> Stage

/// Stages as functions. A pipeline is steps composed with >=>; nothing runs until Experiment.run.
[<AutoOpen>]
module Dsl =
    /// Sequence: the second step starts from the first one's output.
    let inline (>=>) (first: 'a -> 'b) (next: 'b -> 'c) = first >> next

    /// The domain alone (no replay).
    let domain (d: DataSource) = { Domain = d; General = None; Replay = 0.0 }

    /// Replay a share of general text: 0.1 = one sequence in ten from `general`.
    let replay (general: DataSource) (share: float) (d: DataSource) = { Domain = d; General = Some general; Replay = share }

    /// The tiny byte-level Llama (0.77M parameters).
    let tinyModel () = ModelConfig.Tiny()

    /// Pretrain a model from scratch on one corpus: the start of a pipeline.
    let pretrain (corpus: DataSource) (model: ModelConfig) : Stage =
        Stage("pretrain", PretrainConfig(Model = model), [||], [| corpus |])

    /// A model of a Hugging Face family from config.json keys, e.g.
    /// `familyModel """{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, ...}"""`;
    /// the family's defaults fill what is left out, and pretraining sets vocab_size and the special ids from its tokenizer.
    let familyModel (configJson: string) : ModelConfig =
        let o =
            match System.Text.Json.Nodes.JsonNode.Parse configJson with
            | :? System.Text.Json.Nodes.JsonObject as o -> o
            | _ -> invalidArg "configJson" "familyModel: expected a JSON object of config.json keys"
        if not (o.ContainsKey "vocab_size") then o["vocab_size"] <- System.Text.Json.Nodes.JsonValue.Create 1
        ModelConfig.FromJson(o, null)

    /// Pretrain from scratch with a Hugging Face tokenizer: `tokenizerDir` holds tokenizer.json and tokenizer_config.json
    /// (a model's own files; their chat_template then travels with every checkpoint of the pipeline).
    let pretrainWithTokenizer (tokenizerDir: string) (corpus: DataSource) (model: ModelConfig) : Stage =
        Stage("pretrain", PretrainConfig(Model = model, Tokenizer = System.IO.Path.GetFullPath tokenizerDir), [||], [| corpus |])

    /// Start from an existing checkpoint directory (Hugging Face layout).
    let fromCheckpoint (dir: string) : Stage =
        Stage("checkpoint", CheckpointSource.Of dir, [||], [||])

    /// Continual pretraining on a domain (with replay when the mix has a general corpus).
    let adapt (mix: Mix) : Step =
        fun parent ->
            let data = match mix.General with Some g -> [| mix.Domain; g |] | None -> [| mix.Domain |]
            Stage("adapt", AdaptOptions(Replay = mix.Replay), [| parent |], data)

    /// Run several steps from one parent: the branches of the pipeline.
    let branch (steps: Step list) : Stage -> Stage list = fun parent -> steps |> List.map (fun s -> s parent)

    /// Supervised fine-tuning on a JSONL file (prompt/completion or messages); loss on completion tokens only.
    let tune (jsonl: string) : Step =
        fun parent -> Stage("tune", TuneOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// Preference alignment on a JSONL file (prompt/chosen/rejected, or prompt/completion/label):
    /// DPO (beta 0.1) by default; another objective with `Align.loss (Ipo 0.1)`, `Align.loss (SimPo (2.0, 0.5))`...
    let align (jsonl: string) : Step =
        fun parent -> Stage("align", AlignOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// On-policy training with a verifiable reward on a JSONL file of {"prompt", "answer"}: GRPO with group 4 and the
    /// "exact_answer" reward by default; `Grpo.reward`, `Grpo.group`, `Grpo.clip`, `Grpo.aggregation`... change it.
    let grpo (jsonl: string) : Step =
        fun parent -> Stage("grpo", Research.Stages.Online.GrpoOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// RLOO on the same data: GRPO's loop with the leave-one-out baseline and unscaled advantages.
    let rloo (jsonl: string) : Step =
        fun parent ->
            let o = Research.Stages.Online.GrpoOptions(DataPath = System.IO.Path.GetFullPath jsonl)
            Stage("grpo", o.WithBaseline(Research.Stages.Online.Baseline.LeaveOneOut).WithScale(Research.Stages.Online.AdvantageScale.None), [| parent |], [||])

    /// Online DPO: two samples per prompt judged by the reward ("exact_answer" by default), DPO (beta 0.1) on them
    /// against the parent, frozen; `OnlineDpo.reward`, `OnlineDpo.loss`... change it.
    let onlineDpo (jsonl: string) : Step =
        fun parent -> Stage("online_dpo", Research.Stages.Online.OnlineDpoOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// Distil the parent (the student) from `teacher` on a corpus: (1 - kd) CE + kd GJSD(teacher, student).
    let distill (teacher: Stage) (corpus: DataSource) : Step =
        fun student -> Stage("distill", DistillStageOptions(), [| student; teacher |], [| corpus |])


/// The changes a modifier makes to one stage value; `Stage.*` applies them to a stage or to the stage a step makes.
module StageOps =
    /// A typed change of the stage's options.
    let update<'o when 'o :> IStageOptions> (f: 'o -> 'o) (s: Stage) : Stage =
        match s.Config with
        | :? 'o as o -> s.WithConfig(f o :> IStageOptions)
        | _ -> invalidArg "stage" $"stage '{s.Name}' ({s.Kind}) has {s.Config.GetType().Name} options, not {typeof<'o>.Name}"

    /// A change to the training settings of a stage that trains.
    let train (f: TrainConfig -> TrainConfig) (s: Stage) : Stage =
        match s.Config with
        | :? ITrainedOptions as o -> s.WithConfig(o.WithTrain(f o.Train))
        | other -> invalidArg "stage" $"stage '{s.Name}': {other.GetType().Name} has no training settings"

    /// The stage with `second` as its second parent (a reward model, a doremi stage), its own input first.
    let withSecondParent (second: Stage) (s: Stage) : Stage = Stage(s.Name, s.Config, [| s.Parents[0]; second |], s.Data)

    let blockLength (n: int) (s: Stage) =
        match s.Config with
        | :? IBlockOptions as o -> s.WithConfig(o.WithBlockLength n)
        | other -> invalidArg "stage" $"stage '{s.Name}': {other.GetType().Name} has no block length"

    let template (name: string) (s: Stage) =
        match s.Config with
        | :? TuneOptions as o -> s.WithConfig(o.WithTemplate name)
        | :? AlignOptions as o -> s.WithConfig(o.WithTemplate name)
        | :? DistillStageOptions as o -> s.WithConfig(o.WithTemplate name)
        | other -> invalidArg "stage" $"stage '{s.Name}': {other.GetType().Name} renders no chat template"

/// What a modifier applies to: a stage (changed itself) or a step (the stage it makes is changed), so every modifier
/// has one name for both, `pretrain corpus model |> Stage.steps 200` and `adapt mix |> Stage.steps 100`.
[<Sealed; AbstractClass>]
type Modifiable =
    static member Apply(s: Stage, f: Stage -> Stage) : Stage = f s
    static member Apply(step: Stage -> Stage, f: Stage -> Stage) : Stage -> Stage = step >> f

[<AutoOpen>]
module ModifiableOps =
    /// The overload of ^m's Apply for ^x (the resolution `modify` uses).
    let inline applyOn (_: ^m) (x: ^x) (f: Stage -> Stage) : ^x = ((^m or ^x): (static member Apply: ^x * (Stage -> Stage) -> ^x) (x, f))
    /// Applies a change of one stage to a stage or to a step (resolved at compile time; anything else does not compile).
    let inline modify (f: Stage -> Stage) (x: ^x) : ^x = applyOn Unchecked.defaultof<Modifiable> x f

/// Modifiers of stages and steps: each returns a new value, so they pipe, and each takes a stage or a step alike.
/// Every one is typed: a misspelt setting or a setting of another kind of stage does not compile (or, for a stage of the
/// wrong kind, fails when the pipeline is built).
module Stage =
    /// Any change of one stage, applied to a stage or to the stage a step makes: `|> Stage.apply (Selection.weights w)`.
    let inline apply (f: Stage -> Stage) x = modify f x
    /// A typed change of the stage's options: `Stage.update (fun (o: AdaptOptions) -> o.WithReplay 0.2)`.
    let inline update (f: 'o -> 'o) x = modify (StageOps.update f) x
    /// Any change to the training settings of a stage that trains: `Stage.train (fun t -> t.WithGradClip 0.5)`.
    let inline train (f: TrainConfig -> TrainConfig) x = modify (StageOps.train f) x
    let inline named (name: string) x = modify (fun (s: Stage) -> s.Named name) x
    let inline steps (n: int) x = train (fun t -> t.WithSteps n) x
    let inline lr (v: float) x = train (fun t -> t.WithLearningRate v) x
    let inline batch (n: int) x = train (fun t -> t.WithBatchSize n) x
    let inline warmup (n: int) x = train (fun t -> t.WithWarmupSteps n) x
    let inline logEvery (n: int) x = train (fun t -> t.WithLogEvery n) x
    let inline evalEvery (n: int) x = train (fun t -> t.WithEvalEvery n) x
    let inline checkpointEvery (n: int) x = train (fun t -> t.WithCheckpointEvery n) x
    /// Forward and backward in bf16 with float32 master weights (the output checkpoint is float32).
    /// On a CPU without native bf16 (no avx512_bf16 / amx_bf16 flag) such a stage trains in float32 and says so; `forceBf16` insists.
    let inline bf16 x = train (fun t -> t.WithPrecision Research.Training.Precision.BFloat16) x
    /// bf16 even on a CPU without native bf16 (emulated there: many times slower than float32).
    let inline forceBf16 x = train (fun t -> t.WithPrecision(Research.Training.Precision.BFloat16).WithForceBf16 true) x
    /// Tokens per training row (pretrain, adapt, tune, distill, doremi).
    let inline blockLength (n: int) x = modify (StageOps.blockLength n) x
    /// The chat template conversations are rendered with (tune, align, distill on examples): "plain", "chatml", or
    /// "model" (the model's own chat_template, from its tokenizer_config.json).
    let inline template (name: string) x = modify (StageOps.template name) x
    /// LoRA on any training stage (adapt, tune, align, distill): `tune "sft.jsonl" |> Stage.lora (lora 8 16.0)`.
    /// The stage trains adapters on the frozen model, writes them alone (PEFT layout) to adapter/ and the merged model to final/.
    let inline lora (options: LoraOptions) x = train (fun t -> t.WithLora(options.Validate())) x

/// A preference objective with its hyperparameters, as papers name them: `align prefs |> Align.loss (Ipo 0.1)`.
type Preference =
    /// DPO (Rafailov et al.): -log σ(β h).
    | Dpo of beta: float
    /// Conservative DPO: label smoothing ε.
    | Cdpo of beta: float * smoothing: float
    /// Robust DPO (Chowdhury et al.).
    | RobustDpo of beta: float * smoothing: float
    /// IPO (Azar et al.), on length-averaged log-ratios.
    | Ipo of beta: float
    /// SLiC hinge.
    | Hinge of beta: float
    /// LN-DPO: DPO on length-normalised log-ratios.
    | LnDpo of beta: float
    /// SPPO with hard labels.
    | SppoHard of beta: float
    /// APO-zero.
    | ApoZero of beta: float
    /// NCA, pairwise.
    | NcaPair of beta: float
    /// BCO, pairwise.
    | BcoPair of beta: float
    /// SimPO (Meng et al.): reference-free, target margin γ.
    | SimPo of beta: float * gamma: float
    /// ORPO (Hong et al.): SFT plus λ times the odds-ratio term, reference-free.
    | Orpo of lambda: float
    /// KTO (Ethayarajh et al.) on unpaired examples (paired data is unpaired).
    | Kto of beta: float
    /// Point-wise DPO (ULMA) on labels in [0, 1].
    | Pointwise of beta: float

/// Options of align stages.
module Align =
    let private update (f: AlignOptions -> AlignOptions) (step: Step) : Step = step >> StageOps.update f

    /// The objective (mode, loss and its hyperparameters); other preference settings are kept.
    let loss (objective: Preference) : Step -> Step =
        let paired kind beta (o: AlignOptions) = o.WithMode(AlignMode.Paired).WithPreference(o.Preference.WithLoss(kind, beta).WithLabelSmoothing 0.0)
        update (fun o ->
            match objective with
            | Dpo b -> paired PreferenceLoss.Sigmoid b o
            | Cdpo (b, eps) -> (paired PreferenceLoss.Sigmoid b o).WithPreference(o.Preference.WithLoss(PreferenceLoss.Sigmoid, b).WithLabelSmoothing eps)
            | RobustDpo (b, eps) -> (paired PreferenceLoss.Robust b o).WithPreference(o.Preference.WithLoss(PreferenceLoss.Robust, b).WithLabelSmoothing eps)
            | Ipo b -> paired PreferenceLoss.Ipo b o
            | Hinge b -> paired PreferenceLoss.Hinge b o
            | LnDpo b -> paired PreferenceLoss.SigmoidNorm b o
            | SppoHard b -> paired PreferenceLoss.SppoHard b o
            | ApoZero b -> paired PreferenceLoss.ApoZero b o
            | NcaPair b -> paired PreferenceLoss.NcaPair b o
            | BcoPair b -> paired PreferenceLoss.BcoPair b o
            | SimPo (b, g) -> o.WithMode(AlignMode.SimPO).WithPreference(o.Preference.WithBeta(b).WithSimpoGamma g)
            | Orpo l -> o.WithMode(AlignMode.Orpo).WithPreference(o.Preference.WithOrpoLambda l)
            | Kto b -> o.WithMode(AlignMode.Kto).WithPreference(o.Preference.WithBeta b)
            | Pointwise b -> o.WithMode(AlignMode.Pointwise).WithPreference(o.Preference.WithBeta b))
    /// Several paired losses summed with weights (e.g. DPO + SFT-style mixtures of TRL's loss_type list).
    let losses (beta: float) (weighted: (PreferenceLoss * float) list) =
        update (fun o -> o.WithMode(AlignMode.Paired).WithPreference(o.Preference.WithBeta(beta).WithLosses [| for k, w in weighted -> WeightedPreferenceLoss(k, w) |]))
    /// An SFT (negative log-likelihood of chosen) term with this weight beside the preference loss.
    let sftWeight (w: float) = update (fun o -> o.WithPreference(o.Preference.WithSftWeight w))
    let maxLength (tokens: int) = update (fun o -> o.WithMaxLength tokens)
    let maxPromptLength (tokens: int) = update (fun o -> o.WithMaxPromptLength tokens)
    let validationFraction (f: float) = update (fun o -> o.WithValidationFraction f)
    /// Held-out prompts answered greedily (into generations.jsonl and val_gen_length), and tokens per answer.
    let generations (prompts: int) (tokens: int) = update (fun o -> o.WithGenerations(prompts, tokens))
    /// Answers sampled per held-out prompt (val_sample_length), at a temperature and nucleus.
    let samples (perPrompt: int) (temperature: float) (topP: float) = update (fun o -> o.WithSamples(perPrompt, temperature, topP))

/// Options of grpo stages (GRPO, Dr. GRPO, RLOO, prefix sampling).
module Grpo =
    open Research.Stages.Online
    let private update (f: GrpoOptions -> GrpoOptions) (step: Step) : Step = step >> StageOps.update f
    /// The reward: registered rewards by name with their weights (`[ "exact_answer", 1.0 ]`); register your own with
    /// `Rewards.Register (Reward.Of("name", version, fun prompt completion answer -> ...))`.
    let reward (terms: (string * float) list) = update (fun o -> o.WithReward [| for n, w in terms -> RewardTerm(n, w) |])
    /// A reward model stage (`rewardModel "prefs.jsonl"` from some parent) in the reward's sum with this weight: it becomes
    /// this stage's second parent. The registered terms stay in the sum (`Grpo.reward []` first for the model alone).
    let rewardModel (rm: Stage) (weight: float) (step: Step) : Step =
        step >> StageOps.update (fun (o: GrpoOptions) -> o.WithRewardModelWeight weight) >> StageOps.withSecondParent rm
    /// Completions per prompt (G).
    let group (g: int) = update (fun o -> o.WithGroup g)
    let promptsPerStep (n: int) = update (fun o -> o.WithPromptsPerStep n)
    let maxNewTokens (n: int) = update (fun o -> o.WithMaxNewTokens n)
    let temperature (t: float) = update (fun o -> o.WithTemperature t)
    /// The clip range [1 - low, 1 + high]; high above low is DAPO's clip-higher (0.2, 0.28).
    let clip (low: float) (high: float) = update (fun o -> o.WithClip(low, high))
    let scale (s: AdvantageScale) = update (fun o -> o.WithScale s)
    let aggregation (a: LossAggregation) = update (fun o -> o.WithAggregation a)
    /// Dr. GRPO: advantages without the std scaling and the dr_grpo aggregation.
    let drGrpo : Step -> Step = update (fun o -> o.WithScale(AdvantageScale.None).WithAggregation(LossAggregation.DrGrpo))
    /// Keep groups whose rewards are all equal (they are dropped by default: they have no signal).
    let keepUninformative : Step -> Step = update (fun o -> o.WithFilter false)
    /// KL penalty (k3) to the parent, frozen, with this weight (0 by default: no reference is loaded).
    let beta (b: float) = update (fun o -> o.WithBeta b)
    /// Optimiser steps per batch of rollouts (mu); the stage's steps count them all, so they must be a multiple of it.
    let iterations (mu: int) = update (fun o -> o.WithIterations mu)
    /// Prefix sampling: rollouts continue this share of each prompt's "demonstration", moving from `from` to `upTo` over the stage (cosine).
    let prefix (from: float) (upTo: float) = update (fun o -> o.WithPrefix(PrefixSchedule(From = from, To = upTo)))

/// Options of online_dpo stages.
module OnlineDpo =
    open Research.Stages.Online
    let private update (f: OnlineDpoOptions -> OnlineDpoOptions) (step: Step) : Step = step >> StageOps.update f
    /// The judge: registered rewards by name with their weights.
    let reward (terms: (string * float) list) = update (fun o -> o.WithReward [| for n, w in terms -> RewardTerm(n, w) |])
    /// A reward model stage as the judge (with this weight in the sum): it becomes this stage's second parent.
    let rewardModel (rm: Stage) (weight: float) (step: Step) : Step =
        step >> StageOps.update (fun (o: OnlineDpoOptions) -> o.WithRewardModelWeight weight) >> StageOps.withSecondParent rm
    let promptsPerStep (n: int) = update (fun o -> o.WithPromptsPerStep n)
    let maxNewTokens (n: int) = update (fun o -> o.WithMaxNewTokens n)
    let temperature (t: float) = update (fun o -> o.WithTemperature t)
    /// The preference loss on the judged pairs and its beta (TRL's online DPO: sigmoid or ipo).
    let loss (kind: PreferenceLoss) (beta: float) = update (fun o -> o.WithPreference(o.Preference.WithBeta(beta).WithLosses [| WeightedPreferenceLoss(kind, 1.0) |]))

module Tune =
    let private update (f: TuneOptions -> TuneOptions) (step: Step) : Step = step >> StageOps.update f
    let packing (on: bool) = update (fun o -> o.WithPacking on)
    /// NEFTune noise on the embeddings while training (the paper uses alpha 5).
    let neftune (alpha: float) = update (fun o -> o.WithNeftuneAlpha alpha)
    let validationFraction (f: float) = update (fun o -> o.WithValidationFraction f)

/// Distillation on prompt/completion data and its options:
/// `distill teacher corpus |> Distill.kd 0.9`, `Distill.on teacher "tasks.jsonl" |> Distill.onPolicy 0.5 |> Distill.topK 32`.
module Distill =
    let private update (f: DistillStageOptions -> DistillStageOptions) (step: Step) : Step = step >> StageOps.update f
    /// Distil the parent (the student) from `teacher` on a prompt/completion (or messages) JSONL:
    /// (1 - kd) CE + kd GJSD(teacher, student) on the completion tokens.
    let on (teacher: Stage) (jsonl: string) : Step =
        fun student -> Stage("distill", DistillStageOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| student; teacher |], [||])
    /// Share of the distillation term: (1 - r) CE + r D.
    let kd (r: float) = update (fun o -> o.WithLoss(o.Loss.WithKdRatio r))
    /// The divergence (GJSD with its beta, forward or reverse KL...) between teacher and student.
    let divergence (d: Divergence) (beta: float) = update (fun o -> o.WithLoss(o.Loss.WithDivergence(d, beta)))
    /// Softmax temperature of both distributions.
    let temperature (t: float) = update (fun o -> o.WithLoss(o.Loss.WithTemperature t))
    /// GKD's lambda: the share of batches on the student's own samples, scored by the teacher.
    let onPolicy (lambda: float) = update (fun o -> o.WithOnPolicy lambda)
    /// Sequence-level KD: the teacher answers every prompt; the student is tuned on the answers.
    let sequenceLevel : Step -> Step = update (fun o -> o.WithSequenceLevel true)
    /// Cache the teacher's top-k logits on disk once; training reads them and never loads the teacher.
    let topK (k: int) = update (fun o -> o.WithTeacherTopK k)
    /// Tokens generated per prompt (on-policy samples, sequence-level answers).
    let maxNewTokens (n: int) = update (fun o -> o.WithMaxNewTokens n)

/// Settings of the density-based merges (TIES, DARE): the share of each task vector's entries kept.
type Density = { density: float }
/// SLERP's interpolation point between the base (0) and the other model (1).
type Interpolation = { t: float }
/// The scale of the summed task vectors.
type Scale = { lambda: float }
/// Model Breadcrumbs: keep the `density` share of entries after dropping the largest `gamma` share.
type Breadcrumbs = { density: float; gamma: float }
/// DELLA: magnitude-ranked drop probabilities around `density`, spread `epsilon`.
type Della = { density: float; epsilon: float }

/// A merge method with its settings, as mergekit names them; `merge Ties { density = 0.5 } base [ a; b ]`.
type Merge =
    | Linear of unit
    | TaskArithmetic of Scale
    | Ties of Density
    | DareLinear of Density
    | DareTies of Density
    | Slerp of Interpolation
    | ModelStock of unit
    | Breadcrumbs of Breadcrumbs
    | BreadcrumbsTies of Breadcrumbs
    | DellaTies of Della
    | DellaLinear of Della

/// Merging stages that already exist in the pipeline.
[<AutoOpen>]
module MergeDsl =
    /// The stage options of a method and its settings. Each case names a method of the registry (`MergeMethods`, which
    /// the DSL tests check this union covers); the registry checks, when the stage runs, that the method reads each setting.
    let mergeOptions (m: Merge) : MergeStageOptions =
        match m with
        | Linear () -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.Linear)
        | TaskArithmetic s -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.TaskArithmetic, Lambda = System.Nullable s.lambda)
        | Ties d -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.Ties, Density = System.Nullable d.density)
        | DareLinear d -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.DareLinear, Density = System.Nullable d.density)
        | DareTies d -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.DareTies, Density = System.Nullable d.density)
        | Slerp i -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.Slerp, T = System.Nullable i.t)
        | ModelStock () -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.ModelStock)
        | Breadcrumbs b -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.Breadcrumbs, Density = System.Nullable b.density, Gamma = System.Nullable b.gamma)
        | BreadcrumbsTies b -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.BreadcrumbsTies, Density = System.Nullable b.density, Gamma = System.Nullable b.gamma)
        | DellaTies d -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.Della, Density = System.Nullable d.density, Epsilon = System.Nullable d.epsilon)
        | DellaLinear d -> MergeStageOptions(Method = Research.Stages.Merge.MergeMethod.DellaLinear, Density = System.Nullable d.density, Epsilon = System.Nullable d.epsilon)

    /// `merge Ties { density = 0.5 } base [ a; b ]`: the models' task vectors against `baseStage`, merged by the method
    /// (for Linear, `baseStage` is one of the averaged models). Weights are 1 each; `mergeWeighted` sets them.
    let merge (method: 'settings -> Merge) (settings: 'settings) (baseStage: Stage) (models: Stage list) : Stage =
        Stage("merge", mergeOptions (method settings), List.toArray (baseStage :: models), [||])

    /// Branches from the parent, merged back: the parent is the base (task vectors are taken against it), each branch
    /// one merged model. `adapt mix >=> mergeBranches (Ties { density = 0.5 }) [ tuneA; tuneB ]`.
    let mergeBranches (method: Merge) (steps: Step list) : Step =
        fun parent -> merge id method parent (steps |> List.map (fun s -> s parent))

    /// The same with one weight per merged model (after the base).
    let mergeWeighted (method: 'settings -> Merge) (settings: 'settings) (baseStage: Stage) (models: (Stage * float) list) : Stage =
        Stage("merge", (mergeOptions (method settings)).WithWeights [| for _, w in models -> w |], List.toArray (baseStage :: List.map fst models), [||])

/// LoRA settings for `Stage.lora`: `tune "sft.jsonl" |> Stage.lora (lora 8 16.0 |> loraTargets [ "all-linear" ])`.
[<AutoOpen>]
module LoraModifiers =
    /// Rank r and alpha on q_proj and v_proj (PEFT's default targets for Llama), no dropout.
    let lora (rank: int) (alpha: float) = LoraOptions(Rank = rank, Alpha = alpha)
    /// The same options on other linear modules (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, the fused
    /// qkv_proj and gate_up_proj, GPT-2's c_attn, c_proj, c_fc, or "all-linear").
    let loraTargets (modules: string list) (o: LoraOptions) = o.WithTargetModules(List.toArray modules)
    /// Dropout on the adapters' input while training.
    let loraDropout (p: float) (o: LoraOptions) = o.WithDropout p

