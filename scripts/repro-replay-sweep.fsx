// Miniature reproduction: replay-ratio sweep during continual pretraining (forgetting vs domain gain).
// Paper: "Simple and Scalable Strategies to Continually Pre-train Large Language Models"
// (Ibrahim et al., 2024). Claimed direction: replaying more general data during domain adaptation
// shrinks forgetting (the rise of general perplexity), at a small cost in domain gain.
//   research run scripts/repro-replay-sweep.fsx [--tiny] [--out DIR] [--seed 7] [--general-docs 3000]
//                                              [--pretrain-steps 500] [--adapt-steps 200]
// Writes DIR/replay-forgetting-vs-gain.{html,png,svg,pdf}, DIR/replay-sweep.{html,png,svg,pdf}
// (forgetting against replay with a least-squares line) and DIR/replay-sweep.{tex,md}.
// Exit code 0 when the forgetting direction held, 3 when it did not. At --tiny scale pretraining is
// so short that general perplexity can still fall during adaptation (negative forgetting); the
// claim is about the direction across replay ratios, which the sweep still shows.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let seed = arg "seed" 7
let ratios = if tiny then [ 0.0; 0.25; 0.5 ] else [ 0.0; 0.05; 0.1; 0.25; 0.5 ]
let outDir = arg "out" "repro-replay-sweep"

let world = World.quick (arg "general-docs" (if tiny then 240 else 3000)) seed
// --tiny skips the in-training validation: the suites below evaluate every stage anyway.
let start =
    pretrain world.General (tinyModel ()) |> Stage.steps (arg "pretrain-steps" (if tiny then 20 else 500))
    |> fun s -> if tiny then s |> Stage.evalEvery 0 else s
let adaptSteps = arg "adapt-steps" (if tiny then 60 else 200)
let adaptWith (share: float) =
    adapt (world.Finance |> replay world.General share)
    |> Stage.steps adaptSteps
    |> Stage.checkpointEvery (arg "checkpoint-every" adaptSteps)
    |> fun s -> if tiny then s |> Stage.evalEvery 0 else s
    |> Stage.named "adapt"

let result =
    Experiment.points "repro-replay-sweep" [ for r in ratios -> [ "replay", r ], start |> adaptWith r ]
    |> Experiment.seed (int64 seed)
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance; Experiment.heldOutPerplexity world.General ]
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

let ppl (n: Research.Pipelines.NodeResult) suite = n.Evaluations[suite]["perplexity"]

/// (replay, domain gain, forgetting): gain = fall of finance perplexity, forgetting = rise of general perplexity.
let points =
    [ for run in result.Runs ->
        let before, after = run.Node "pretrain", run.Node "adapt"
        run.Point.Parameters["replay"], ppl before "finance" - ppl after "finance", ppl after "general" - ppl before "general" ]
    |> List.sortBy (fun (r, _, _) -> r)

/// Least-squares line y = a + b x.
let fitLine (pts: (float * float) list) =
    let mx, my = List.averageBy fst pts, List.averageBy snd pts
    let sxx = pts |> List.sumBy (fun (x, _) -> (x - mx) ** 2.0)
    let b = if sxx = 0.0 then 0.0 else (pts |> List.sumBy (fun (x, y) -> (x - mx) * (y - my))) / sxx
    my - b * mx, b

let forgetting = points |> List.map (fun (r, _, f) -> r, f)
let a, b = fitLine forgetting
let label (r: float) = $"replay {r:G3}"

Figures.forgettingVsGain "Replay sweep: forgetting against domain gain" "domain gain (finance perplexity fall)" "forgetting (general perplexity rise)"
    (points |> List.map (fun (r, g, f) -> label r, g, f))
|> Figures.save outDir "replay-forgetting-vs-gain" |> ignore
Figures.sweep "Replay sweep: forgetting against replay ratio" "replay ratio" "forgetting (general perplexity rise)"
    [ "forgetting", forgetting, Some(FitFunction(sprintf "least squares: %.2f %+.2f x" a b, fun x -> a + b * x)) ]
|> Figures.save outDir "replay-sweep" |> ignore

let table =
    { Header = [ "replay"; "domain gain"; "forgetting" ]
      Rows = [ for r, g, f in points -> [ box r; box g; box f ] ] }
Tables.save outDir "replay-sweep" "Replay sweep: domain gain (fall of finance perplexity) and forgetting (rise of general perplexity)" "tab:replay-sweep" table |> ignore
printfn "%s" (Tables.markdown table)

let (_, g0, f0), (rMax, gMax, fMax) = List.head points, List.last points
let lessForgetting = fMax < f0
let smallCost = gMax >= 0.8 * g0
printfn "claim (Ibrahim et al., 2024): more replay -> less forgetting, at a small cost in domain gain"
printfn "forgetting: %.3f at replay 0, %.3f at replay %g; fitted slope %.3f per unit replay -> %s" f0 fMax rMax b (if lessForgetting then "HELD" else "DID NOT HOLD")
printfn "domain gain: %.3f at replay 0, %.3f at replay %g (cost %.1f%%; small = at most 20%%) -> %s" g0 gMax rMax (100.0 * (g0 - gMax) / g0) (if smallCost then "HELD" else "DID NOT HOLD")
printfn "figures and table in %s" (System.IO.Path.GetFullPath outDir)
if not lessForgetting then exit 3
