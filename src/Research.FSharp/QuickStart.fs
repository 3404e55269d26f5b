namespace Research

open System.Globalization
open Research.Pipelines

/// The quick start, defined once: `research quickstart` runs it through scripts/quickstart.fsx at full size,
/// notebooks/quickstart.ipynb at a small one, and tests at smaller ones still.
[<AutoOpen>]
module QuickStartExperiment =
    let private build (o: QuickStartOptions) : Experiment =
        let world = World.createIn o.WorldPath o.GeneralDocuments o.Seed
        let start = pretrain world.General (tinyModel ()) |> Stage.steps o.PretrainSteps
        let adaptFor name share =
            adapt (world.Domain |> replay world.General share)
            |> Stage.steps o.AdaptSteps
            |> Stage.checkpointEvery o.CheckpointEvery
            |> Stage.named name
        let recipe =
            branch [ adaptFor "adapt-no-replay" 0.0
                     adaptFor $"""adapt-replay-{o.Replay.ToString(CultureInfo.InvariantCulture)}""" o.Replay
                     >=> (tune world.Instructions |> Stage.steps o.TuneSteps)
                     >=> (align world.Preferences |> Stage.steps o.AlignSteps) ]
        Experiment.createBranches "quickstart" start recipe
        |> Experiment.seed (int64 o.Seed)
        |> Experiment.evaluateEach (Experiment.heldOutPerplexity world.Domain :: Capabilities.suites world)

    module Experiment =
        /// On the default world: pretrain a tiny model on general text, adapt it to the domain with and without replay,
        /// tune the replay branch on instructions, align it on preference pairs; every suite after every stage.
        /// `QuickStart.Report` reads the result.
        let quickStart (o: QuickStartOptions) : Experiment = build o
