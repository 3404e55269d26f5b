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
        Stage("pretrain", "pretrain", PretrainConfig(Model = model), [||], [| corpus |])

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
        Stage("pretrain", "pretrain", PretrainConfig(Model = model, Tokenizer = System.IO.Path.GetFullPath tokenizerDir), [||], [| corpus |])

    /// Start from an existing checkpoint directory (Hugging Face layout).
    let fromCheckpoint (dir: string) : Stage =
        Stage("checkpoint", "checkpoint", CheckpointSource.Of dir, [||], [||])

    /// Continual pretraining on a domain (with replay when the mix has a general corpus).
    let adapt (mix: Mix) : Step =
        fun parent ->
            let data = match mix.General with Some g -> [| mix.Domain; g |] | None -> [| mix.Domain |]
            Stage("adapt", "adapt", AdaptOptions(Replay = mix.Replay), [| parent |], data)

    /// Run several steps from one parent: the branches of the pipeline.
    let branch (steps: Step list) : Stage -> Stage list = fun parent -> steps |> List.map (fun s -> s parent)

    /// Supervised fine-tuning on a JSONL file (prompt/completion or messages); loss on completion tokens only.
    let tune (jsonl: string) : Step =
        fun parent -> Stage("tune", "tune", TuneOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// Preference alignment on a JSONL file (prompt/chosen/rejected, or prompt/completion/label):
    /// DPO by default; other losses and modes through `Stage.config "Preference"` / `"Mode"`.
    let align (jsonl: string) : Step =
        fun parent -> Stage("align", "align", AlignOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| parent |], [||])

    /// Distil the parent (the student) from `teacher` on a corpus: (1 - kd) CE + kd GJSD(teacher, student).
    let distill (teacher: Stage) (corpus: DataSource) : Step =
        fun student -> Stage("distill", "distill", DistillStageOptions(), [| student; teacher |], [| corpus |])

    /// Merge options: the method with its defaults; change fields with `Stage.config` or the record's init syntax.
    let mergeWith (m: Research.Stages.Merge.MergeMethod) = MergeStageOptions(Method = m)

    /// Branches from the parent, merged back: the parent is the base (task vectors are taken against it),
    /// each branch one merged model. `adapt mix >=> mergeBranches (mergeWith MergeMethod.Ties) [ tuneA; tuneB ]`.
    let mergeBranches (options: MergeStageOptions) (steps: Step list) : Step =
        fun parent ->
            let branches = steps |> List.map (fun s -> s parent)
            Stage("merge", "merge", options, List.toArray (parent :: branches), [||])

/// Modifiers of stages and steps: each returns a new value, so they pipe.
module Stage =
    let private set (name: string) (value: objnull) (record: 'r) = Research.Util.RecordCopy.With(record, name, value)

    /// Any change to the stage's config record: `Stage.config "Replay" (box 0.2)`.
    let config (field: string) (value: objnull) (s: Stage) = s.WithConfig(set field value s.Config)

    /// Any change to the training settings: `Stage.train "GradClip" (box 0.5)`.
    let train (field: string) (value: objnull) (s: Stage) =
        let t =
            match s.Config with
            | :? PretrainConfig as c -> c.Train
            | :? AdaptOptions as c -> c.Train
            | :? DistillStageOptions as c -> c.Train
            | :? TuneOptions as c -> c.Train
            | :? AlignOptions as c -> c.Train
            | other -> invalidArg "stage" $"stage '{s.Name}': {other.GetType().Name} has no training settings"
        s |> config "Train" (set field value t)

    let named (name: string) (s: Stage) = s.Named name
    let steps (n: int) = train "Steps" (box n)
    let lr (x: float) = train "LearningRate" (box x)
    let batch (n: int) = train "BatchSize" (box n)
    let warmup (n: int) = train "WarmupSteps" (box n)
    let logEvery (n: int) = train "LogEvery" (box n)
    let evalEvery (n: int) = train "EvalEvery" (box n)
    let checkpointEvery (n: int) = train "CheckpointEvery" (box n)
    /// Tokens per training sequence (pretrain and adapt).
    let blockLength (n: int) = config "BlockLength" (box n)
    /// Forward and backward in bf16 with float32 master weights (the output checkpoint is float32).
    let bf16 (s: Stage) = train "Precision" (box Research.Training.Precision.BFloat16) s

/// The same modifiers lifted to steps, so `adapt mix |> Step.steps 200 |> Step.named "adapt"` pipes.
module Step =
    let map (f: Stage -> Stage) (step: Step) : Step = step >> f
    let named name = map (Stage.named name)
    let steps n = map (Stage.steps n)
    let lr x = map (Stage.lr x)
    let batch n = map (Stage.batch n)
    let warmup n = map (Stage.warmup n)
    let logEvery n = map (Stage.logEvery n)
    let evalEvery n = map (Stage.evalEvery n)
    let checkpointEvery n = map (Stage.checkpointEvery n)
    let blockLength n = map (Stage.blockLength n)
    let bf16 = map Stage.bf16
    let config field value = map (Stage.config field value)
    let train field value = map (Stage.train field value)

/// Distillation on prompt/completion data and its options, as stage modifiers:
/// `Distill.on teacher "tasks.jsonl" |> Step.map (Distill.onPolicy 0.5)`.
module Distill =
    /// Distil the parent (the student) from `teacher` on a prompt/completion (or messages) JSONL:
    /// (1 - kd) CE + kd GJSD(teacher, student) on the completion tokens.
    let on (teacher: Stage) (jsonl: string) : Step =
        fun student -> Stage("distill", "distill", DistillStageOptions(DataPath = System.IO.Path.GetFullPath jsonl), [| student; teacher |], [||])
    /// GKD's lambda: the share of batches on the student's own samples, scored by the teacher.
    let onPolicy (lambda: float) (s: Stage) = s |> Stage.config "OnPolicyLambda" (box lambda)
    /// Sequence-level KD: the teacher answers every prompt; the student is tuned on the answers.
    let sequenceLevel (s: Stage) = s |> Stage.config "SequenceLevel" (box true)
    /// Cache the teacher's top-k logits on disk once; training reads them and never loads the teacher.
    let teacherTopK (k: int) (s: Stage) = s |> Stage.config "TeacherTopK" (box k)
    /// Tokens generated per prompt (on-policy samples, sequence-level answers).
    let maxNewTokens (n: int) (s: Stage) = s |> Stage.config "MaxNewTokens" (box n)
    /// Share of the distillation term: (1 - r) CE + r D.
    let kdRatio (r: float) (s: Stage) =
        let o = s.Config :?> DistillStageOptions
        s |> Stage.config "Loss" (box (Research.Util.RecordCopy.With(o.Loss, "KdRatio", box r)))

/// LoRA on any training stage (adapt, tune, align, distill): `tune "sft.jsonl" |> Step.lora (lora 8 16.0)`.
/// The stage trains adapters on the frozen model, writes them alone (PEFT layout) to adapter/ and the merged model to final/.
[<AutoOpen>]
module LoraModifiers =
    /// Rank r and alpha on q_proj and v_proj (PEFT's default targets for Llama), no dropout.
    let lora (rank: int) (alpha: float) = LoraOptions(Rank = rank, Alpha = alpha)
    /// The same options on other linear modules (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
    let loraTargets (modules: string list) (o: LoraOptions) = Research.Util.RecordCopy.With(o, "TargetModules", box (List.toArray modules))
    /// Dropout on the adapters' input while training.
    let loraDropout (p: float) (o: LoraOptions) = Research.Util.RecordCopy.With(o, "Dropout", box p)

    let private withLora (options: LoraOptions) (s: Stage) = Stage.train "Lora" (box (options.Validate())) s

    module Stage =
        let lora (options: LoraOptions) (s: Stage) = withLora options s

    module Step =
        let lora (options: LoraOptions) (step: Step) : Step = step >> withLora options
