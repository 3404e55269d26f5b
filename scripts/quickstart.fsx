// The quick start, as a researcher writes it: on the embedded default world (a fictional finance domain and a general
// encyclopedia), pretrain a tiny model on general text, adapt it to the domain with and without replay, tune the
// replay branch on instructions, align it on preference pairs, and print the capability report after each stage.
//   research quickstart [--seed 7] [--pretrain-steps 500] [--adapt-steps 200] [--tune-steps 120] [--align-steps 40] [--replay 0.1] [--general-docs 3000]
//   dotnet fsi scripts/quickstart.fsx -- --seed 7      (after `dotnet build -c Release src/Research.Cli`)
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research
open Research.Pipelines

let arg name fallback = Script.arg fsi.CommandLineArgs name fallback
let seed = arg "seed" 7
let replayShare = arg "replay" 0.1

let world = World.create (arg "general-docs" 3000) seed

let start = pretrain world.General (tinyModel ()) |> Stage.steps (arg "pretrain-steps" 500)

let adaptFor name share =
    adapt (world.Domain |> replay world.General share)
    |> Stage.steps (arg "adapt-steps" 200)
    |> Stage.checkpointEvery (arg "checkpoint-every" 40)
    |> Stage.named name

let recipe =
    branch [ adaptFor "adapt-no-replay" 0.0
             adaptFor $"adapt-replay-{replayShare}" replayShare
             >=> (tune world.Instructions |> Stage.steps (arg "tune-steps" 120))
             >=> (align world.Preferences |> Stage.steps (arg "align-steps" 40)) ]

let result =
    Experiment.createBranches "quickstart" start recipe
    |> Experiment.seed (int64 seed)
    |> Experiment.evaluateEach (Experiment.heldOutPerplexity world.Domain :: Capabilities.suites world)
    |> Experiment.run

let report = QuickStart.Report result
let capabilities = report.Capabilities
for i in 1 .. capabilities.Stages.Count do
    printfn "\nafter %s:\n%s" capabilities.Stages[i - 1] ((capabilities.Take i).Table())
printfn "%s" (report.Table())
printfn "%s" (report.Checks())
for n in result.Runs[0].Nodes do
    printfn "%s: %s; checkpoint %s" n.Name n.Status n.Checkpoint
if not report.AllDirectionsHold then
    eprintfn "quickstart: some expected directions did not hold (see the checks above)"
    exit 3
