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

let options =
    QuickStartOptions(Seed = seed, GeneralDocuments = arg "general-docs" 3000, PretrainSteps = arg "pretrain-steps" 500,
                      AdaptSteps = arg "adapt-steps" 200, CheckpointEvery = arg "checkpoint-every" 40,
                      TuneSteps = arg "tune-steps" 120, AlignSteps = arg "align-steps" 40, Replay = arg "replay" 0.1)

// The experiment itself is src/Research.FSharp/QuickStart.fs (the notebook runs the same definition).
let result = Experiment.quickStart options |> Experiment.run

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
