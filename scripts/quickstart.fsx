// The quick start, as a researcher writes it: pretrain a tiny model on general text, adapt it to a
// finance domain with and without replay, and compare held-out perplexity after every stage.
//   research quickstart [--seed 7] [--pretrain-steps 500] [--adapt-steps 200] [--replay 0.1] [--general-docs 3000]
//   dotnet fsi scripts/quickstart.fsx -- --seed 7      (after `dotnet build -c Release src/Research.Cli`)
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research
open Research.Pipelines

let arg name fallback = Script.arg fsi.CommandLineArgs name fallback
let seed = arg "seed" 7
let replayShare = arg "replay" 0.1

let world = World.quick (arg "general-docs" 3000) seed

let start = pretrain world.General (tinyModel ()) |> Stage.steps (arg "pretrain-steps" 500)

let adaptFor name share =
    adapt (world.Finance |> replay world.General share)
    |> Step.steps (arg "adapt-steps" 200)
    |> Step.checkpointEvery (arg "checkpoint-every" 40)
    |> Step.named name

let recipe = branch [ adaptFor "adapt-no-replay" 0.0; adaptFor $"adapt-replay-{replayShare}" replayShare ]

let result =
    Experiment.createBranches "quickstart" start recipe
    |> Experiment.seed (int64 seed)
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance; Experiment.heldOutPerplexity world.General ]
    |> Experiment.run

let report = QuickStart.Report result
printfn "\n%s" (report.Table())
for n in result.Runs[0].Nodes do
    printfn "%s: %s; checkpoint %s" n.Name n.Status n.Checkpoint
if not (report.DomainImproved && report.ReplayForgetsLess) then
    eprintfn "quickstart: the expected directions did not hold (see the table)"
    exit 3
