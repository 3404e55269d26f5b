// Miniature reproduction: domain upsampling at the end of training.
// Paper: "Does your data spark joy? Performance gains from domain upsampling at the end of training"
// (Blakeney et al., 2024). Claimed direction: with the same total steps, upsampling the domain data over
// the last 10-20% of training improves the domain metric over a constant mixture, at little general cost.
//   research run scripts/repro-upsampling.fsx [--tiny] [--out DIR] [--seed 7] [--general-docs 2000]
//                                             [--pretrain-steps 300] [--steps 400] [--factor 5]
// From a model pretrained on general text, continued training on a general+finance mixture (finance 10%):
// constant for all steps, or finance upsampled `factor`x over the last 10% and last 20% of the same steps.
// Writes DIR/upsampling.{html,png,svg,pdf} (held-out perplexities against the upsampled share of steps)
// and DIR/upsampling.{tex,md}. Exit code 0 when the domain claim held, 3 when it did not.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let seed = arg "seed" 7
let outDir = arg "out" "repro-upsampling"
let steps = arg "steps" (if tiny then 60 else 400)
let factor = float (arg "factor" 5)
let baseWeights = [ 0.9; 0.1 ]                                   // general, finance

let world = World.quick (arg "general-docs" (if tiny then 240 else 2000)) seed
let start =
    pretrain world.General (tinyModel ()) |> Stage.steps (arg "pretrain-steps" (if tiny then 20 else 300))
    |> fun s -> if tiny then s |> Stage.evalEvery 0 else s
let fractions = [ 0.0; 0.1; 0.2 ]
let branchFor (fraction: float) =
    let name = if fraction = 0.0 then "constant" else $"upsample-last-{int (fraction * 100.0)}"
    Selection.adaptDomains [ world.General; world.Finance ]
    |> Stage.apply (Selection.weights baseWeights)
    |> Stage.apply (fun s -> if fraction = 0.0 then s else s |> Selection.upsampleLast "finance" fraction factor)
    |> Stage.steps steps
    |> Stage.checkpointEvery steps
    |> Stage.evalEvery 0
    |> Stage.named name

let result =
    Experiment.createBranches "repro-upsampling" start (fun s -> [ for f in fractions -> branchFor f s ])
    |> Experiment.seed (int64 seed)
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance; Experiment.heldOutPerplexity world.General ]
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

let node (name: string) = result.Runs |> Seq.collect (fun r -> r.Nodes) |> Seq.find (fun n -> n.Name = name)
let ppl (name: string) suite = (node name).Evaluations[suite]["perplexity"]
/// (share of steps upsampled, finance perplexity, general perplexity)
let points =
    [ for f in fractions ->
        let name = if f = 0.0 then "constant" else $"upsample-last-{int (f * 100.0)}"
        f, ppl name "finance", ppl name "general" ]

Figures.sweep $"Domain upsampling at the end ({factor}x finance, same {steps} steps)" "share of steps with finance upsampled" "held-out perplexity"
    [ "finance (domain)", [ for f, d, _ in points -> f, d ], None
      "general", [ for f, _, g in points -> f, g ], None ]
|> Figures.save outDir "upsampling" |> ignore

let table =
    { Header = [ "upsampled share"; "finance ppl"; "general ppl" ]
      Rows = [ for f, d, g in points -> [ box f; box d; box g ] ] }
Tables.save outDir "upsampling" $"Domain upsampling ({factor}x finance) over the last share of {steps} steps vs a constant 90/10 mixture: held-out perplexity" "tab:upsampling" table |> ignore
printfn "%s" (Tables.markdown table)

let _, d0, g0 = List.head points
let bestF, bestD, bestG = points |> List.tail |> List.minBy (fun (_, d, _) -> d)
let domainGain = points |> List.tail |> List.forall (fun (_, d, _) -> d < d0)
let smallCost = bestG <= 1.05 * g0
printfn "claim (Blakeney et al., 2024): upsampling the domain over the last 10-20%% of steps improves the domain metric vs a constant mixture, with little general cost"
printfn "domain: finance perplexity %.3f constant; %s -> %s" d0 (String.concat ", " [ for f, d, _ in List.tail points -> $"%.3f{d} upsampling the last %.0f{100.0 * f}%%" ]) (if domainGain then "HELD" else "DID NOT HOLD")
printfn "general cost: general perplexity %.3f constant, %.3f upsampling the last %.0f%% (%+.1f%%; little = at most +5%%) -> %s" g0 bestG (100.0 * bestF) (100.0 * (bestG - g0) / g0) (if smallCost then "HELD" else "DID NOT HOLD")
printfn "figures and table in %s" (System.IO.Path.GetFullPath outDir)
if not domainGain then exit 3
