namespace Research

open Deedle
open Research.Pipelines

/// Capability suites of the default world and the capabilities × stages report (terminal table or Deedle frame).
module Capabilities =
    /// The six suites of a world (domain_knowledge, domain_task, reasoning, instruction_following, preference,
    /// general_retention), bound to the experiment's seed by `Experiment.evaluateEach`.
    let suites (w: World.DefaultWorld) : (int64 -> ISuite) list =
        [ for i in 0 .. 5 -> fun seed -> Capability.Suites(w.Files, w.General, seed).[i] ]

    /// The six suites with the generation prompts rendered by the model's own chat_template (a Hugging Face tokenizer's).
    let suitesWithModelTemplate (w: World.DefaultWorld) : (int64 -> ISuite) list =
        [ for i in 0 .. 5 -> fun seed -> Capability.Suites(w.Files, w.General, seed, chatTemplate = "model").[i] ]

    /// The same with k seeded few-shot examples for the multiple-choice suites.
    let suitesFewShot (k: int) (w: World.DefaultWorld) : (int64 -> ISuite) list =
        [ for i in 0 .. 5 -> fun seed -> Capability.Suites(w.Files, w.General, seed, k).[i] ]

    /// Capabilities × stages of the first run of a result.
    let report (r: ExperimentResult) = CapabilityReport.From r

    /// The report as a terminal table.
    let table (r: ExperimentResult) = (report r).Table()

    /// Capabilities × stages as a frame: rows "suite metric", columns the stages in pipeline order.
    let frame (r: ExperimentResult) : Frame<string, string> =
        let rep = report r
        [ for i in 0 .. rep.Stages.Count - 1 ->
            rep.Stages.[i],
            Series.ofObservations
                [ for row in rep.Rows do
                    match row.Values.[i] |> Option.ofNullable with
                    | Some v -> yield $"{row.Suite} {row.Metric}", v
                    | None -> () ] ]
        |> Frame.ofColumns
