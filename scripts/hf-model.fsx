// A Hugging Face family, end to end: from a real tokenizer (or a whole model directory) to an adapted, tuned, aligned
// and TIES-merged checkpoint, each in HF layout with the tokenizer files and chat_template carried along.
//   research run scripts/hf-model.fsx -- --tokenizer DIR                (pretrains a tiny Qwen3-shaped model on DIR's tokenizer)
//   research run scripts/hf-model.fsx -- --model DIR                    (starts from a downloaded model directory instead)
//   options: --steps N (per stage, default 30), --seed S, --general-docs N
// DIR holds tokenizer.json and tokenizer_config.json with a chat_template (docs/models.md shows where to get one).
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research
open Research.Pipelines
open Research.Stages
open Research.Stages.Merge

let arg name fallback = Script.arg fsi.CommandLineArgs name fallback
let steps = arg "steps" 30
let world = World.create (arg "general-docs" 240) (arg "seed" 3)

// The start: a model directory as it is, or a tiny Qwen3-shaped model pretrained on the general text with the tokenizer.
let start =
    match arg "model" "", arg "tokenizer" "" with
    | model, _ when model <> "" -> fromCheckpoint model
    | "", tokenizer when tokenizer <> "" ->
        familyModel """{"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 256,
                        "tie_word_embeddings": true}"""
        |> pretrainWithTokenizer tokenizer world.General
        |> Stage.steps steps |> Stage.blockLength 64
    | _ -> failwith "give --tokenizer DIR (a tokenizer.json + tokenizer_config.json) or --model DIR (a Hugging Face model directory)"

// Both branches render the conversations through the model's own chat_template; the merge takes their task vectors
// against the adapted model.
let finetune =
    tune world.Instructions |> Stage.template "model" |> Stage.steps steps |> Stage.blockLength 128 |> Stage.named "tune"
let prefer =
    align world.Preferences |> Stage.template "model" |> Align.maxLength 128 |> Stage.steps steps |> Stage.named "align"

let recipe =
    adapt (world.Domain |> replay world.General 0.1) |> Stage.steps steps |> Stage.blockLength 64 |> Stage.named "adapt"
    >=> mergeBranches (Ties { density = 0.5 }) [ finetune; prefer ]
    |> Stage.named "merge"

let result =
    Experiment.create "hf-model" start recipe
    |> Experiment.seed 3L
    |> Experiment.evaluateEach (Capabilities.suitesWithModelTemplate world)
    |> Experiment.run

printfn "%s" (Capabilities.table result)
for n in result.Runs[0].Nodes do printfn "%-9s %s" n.Name n.Checkpoint
