namespace Research

open Research.Pipelines
open Research.Stages
open Research.Stages.Online
open Research.Stages.Reward

/// Reward models and preference-data distillation as steps: `rewardModel "prefs.jsonl"` trains a Bradley–Terry reward model
/// from the parent; `preferencePairs "prompts.jsonl" |> Pairs.judgeModel rm >=> alignOnPairs` samples candidates from the
/// policy, lets the reward model pick best vs worst, and trains DPO on those pairs (FinDAP's preference distillation).
[<AutoOpen>]
module RewardDsl =
    /// A reward model: the parent decoder with a one-label `score` head, trained on prompt/chosen/rejected pairs (optional
    /// "margin" per line) with -log sigma(r_c - r_r - m); reports held-out pair accuracy.
    let rewardModel (jsonl: string) : Step =
        fun parent -> Stage("reward", RewardOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// N candidates per prompt sampled from the parent, scored by a judge (`Pairs.judgeModel` and/or `Pairs.judge`), best vs
    /// worst kept as pairs (pairs.jsonl and run-store rows); the stage's checkpoint is the parent policy.
    let preferencePairs (jsonl: string) : Step =
        fun parent -> Stage("pairs", PairsOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// An align stage (DPO, beta 0.1, by default; `Align.loss` changes it) on the pairs its parent, a pairs stage, wrote.
    let alignOnPairs : Step =
        fun parent -> Stage("align", AlignOptions(), [| parent |], [||])

/// Options of pairs stages.
module Pairs =
    let private update (f: PairsOptions -> PairsOptions) (step: Step) : Step = step >> StageOps.update f
    /// Candidates sampled per prompt (N).
    let candidates (n: int) = update (fun o -> o.WithCandidates n)
    let maxNewTokens (n: int) = update (fun o -> o.WithMaxNewTokens n)
    let temperature (t: float) = update (fun o -> o.WithTemperature t)
    /// Top-k (0 = off) and nucleus (1 = off) of the sampling.
    let sampling (topK: int) (topP: float) = update (fun o -> o.WithSampling(topK, topP))
    /// Registered rewards in the judge's weighted sum: `[ "exact_answer", 1.0 ]`.
    let judge (terms: (string * float) list) = update (fun o -> o.WithJudge [| for n, w in terms -> RewardTerm(n, w) |])
    /// A reward model stage (e.g. `rewardModel prefs base`) as the judge: it becomes the stage's second parent.
    let judgeModel (rm: Stage) (step: Step) : Step =
        step >> fun s ->
            match s.Config with
            | :? PairsOptions -> StageOps.withSecondParent rm s
            | other -> invalidArg "step" $"stage '{s.Name}': {other.GetType().Name} is not a pairs stage"
    /// The reward model's weight in the judge's sum (1 by default).
    let modelWeight (w: float) = update (fun o -> o.WithModelWeight w)
    /// Keep a pair only when best - worst exceeds this gap (0: drop exact ties only).
    let minGap (g: float) = update (fun o -> o.WithMinGap g)

/// Settings of reward stages, and trained reward models as rewards.
module RewardModels =
    let private update (f: RewardOptions -> RewardOptions) (step: Step) : Step = step >> StageOps.update f
    let maxLength (n: int) = update (fun o -> o.WithMaxLength n)
    let validationFraction (f: float) = update (fun o -> o.WithValidationFraction f)
    /// A trained reward model (a reward stage's checkpoint) as an IReward; its version is a digest of its weights.
    let load (name: string) (checkpoint: string) : RewardModel = RewardModel.Load(name, checkpoint)
    /// The same, registered under `name` for `Grpo.reward [ name, w ]` or `OnlineDpo.reward`; returns the name.
    let register (name: string) (checkpoint: string) : string =
        Rewards.Register(RewardModel.Load(name, checkpoint))
        name
    /// Pair accuracy and mean reward margin of a reward model on a preference file (empty for a model without a one-label head).
    let suite (name: string) (jsonl: string) = RewardSuite(name, System.IO.Path.GetFullPath jsonl) :> ISuite
