// Miniature reproduction: domain upsampling at the end of training.
// Paper: "Does your data spark joy? Performance gains from domain upsampling at the end of training"
// (Blakeney et al., 2024). Claimed direction: with the same total steps, upsampling the domain data over
// the last 10-20% of training improves the domain metric over a constant mixture, at little general cost.
//   research run scripts/repro-upsampling.fsx [--tiny] [--seeds 5] [--out DIR] [--world-seed 7] [--general-docs 2000]
//                                             [--pretrain-steps 300] [--steps 400] [--factor 5]
// From a model pretrained on general text, continued training on a general+finance mixture (finance 10%):
// constant for all steps, or finance upsampled `factor`x over the last 10% and last 20% of the same steps.
// Writes DIR/upsampling.{html,png,svg,pdf} (held-out perplexities against the upsampled share of steps)
// and DIR/upsampling.{tex,md}, DIR/upsampling-claims.{tex,md}. Every branch is trained under each of --seeds
// seeds; the claims are judged on differences paired by seed (Claims). Exit code 0 when both domain claims
// held, 3 when one did not.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let worldSeed = arg "world-seed" 7
let seeds = arg "seeds" 5
let outDir = arg "out" "repro-upsampling"
let steps = arg "steps" (if tiny then 60 else 400)
let factor = float (arg "factor" 5)
let baseWeights = [ 0.9; 0.1 ]                                   // general, finance

let world = World.quick (arg "general-docs" (if tiny then 240 else 2000)) worldSeed
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
    |> Experiment.seeds [ for s in 1 .. seeds -> int64 s ]
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance; Experiment.heldOutPerplexity world.General ]
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

let nameOf (f: float) = if f = 0.0 then "constant" else $"upsample-last-{int (f * 100.0)}"
/// Held-out perplexity on suite after the branch's stage, per seed.
let ppl (name: string) suite = result |> Claims.perSeedAll (fun run -> (run.Node name).Evaluations[suite]["perplexity"])
/// (share of steps upsampled, finance perplexity, general perplexity), each over the seeds.
let points = [ for f in fractions -> f, Claims.summary (ppl (nameOf f) "finance"), Claims.summary (ppl (nameOf f) "general") ]
let caption = (points |> List.head |> fun (_, d, _) -> d.Describe())

Figures.sweepOverSeeds $"Domain upsampling at the end ({factor}x finance, same {steps} steps)" "share of steps with finance upsampled" "held-out perplexity" caption
    [ "finance (domain)", [ for f, d, _ in points -> f, d.Mean, d.Lower, d.Upper ]
      "general", [ for f, _, g in points -> f, g.Mean, g.Lower, g.Upper ] ]
|> Figures.save outDir "upsampling" |> ignore

let table =
    { Header = [ "upsampled share"; "finance ppl"; "general ppl" ]
      Rows = [ for f, d, g in points -> [ box f; Tables.intervalCell d; Tables.intervalCell g ] ] }
Tables.save outDir "upsampling" $"Domain upsampling ({factor}x finance) over the last share of {steps} steps vs a constant 90/10 mixture: held-out perplexity, {caption}" "tab:upsampling" table |> ignore
printfn "%s" (Tables.markdown table)

printfn "claim (Blakeney et al., 2024): upsampling the domain over the last 10-20%% of steps improves the domain metric vs a constant mixture, with little general cost; %d seeds" seeds
let constant = nameOf 0.0
let verdicts =
    let upsampled = List.tail fractions
    Claims.report
        ([ for f in upsampled ->
             Claims.paired $"domain gain, last {int (100.0 * f)}%%" $"finance ppl({nameOf f}) - finance ppl(constant)" Below (ppl (nameOf f) "finance") (ppl constant "finance") ]
         @ [ for f in upsampled ->
               Claims.paired $"little general cost, last {int (100.0 * f)}%%" $"general ppl({nameOf f}) - 1.05 general ppl(constant)" Below
                   (ppl (nameOf f) "general") (ppl constant "general" |> Map.map (fun _ g -> 1.05 * g)) ])
Tables.save outDir "upsampling-claims" $"Domain upsampling: claims over {seeds} seeds (paired by seed)" "tab:upsampling-claims" (Claims.table verdicts) |> ignore
printfn "figures and tables in %s" (System.IO.Path.GetFullPath outDir)
if not (verdicts |> List.take 2 |> List.forall (fun v -> v.Held)) then exit 3
