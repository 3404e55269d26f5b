// A mini reproduction of FinDAP's recipe ("Demystifying Domain-adaptive Post-training for Financial LLMs", Ke et al.
// 2025): continual pretraining on the domain with general replay -> instruction tuning -> preference alignment, on the
// default world, over 5 seeds. Prints the capability x stage table (domain knowledge, domain task, reasoning,
// instruction following, preference, general retention) as mean ± 95% t half-width, and each stage against the one
// before it paired by seed; writes the table (.md, .tex) and a paper-style figure into --out.
//   research run scripts/findap.fsx [--tiny] [--seeds 5] [--out findap]
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open System.IO
open Research
open Research.Pipelines

let args = fsi.CommandLineArgs
let tiny = args |> Array.contains "--tiny"
let seeds = Script.arg args "seeds" 5
let outDir = Script.arg args "out" "findap"
let size (full: int) (small: int) = if tiny then small else full

let world = World.create (size 3000 400) 7
let start = pretrain world.General (tinyModel ()) |> Stage.steps (size 500 60) |> Stage.named "base"
let recipe =
    (adapt (world.Domain |> replay world.General 0.1) |> Stage.steps (size 200 40) |> Stage.named "cpt")
    >=> (tune world.Instructions |> Stage.steps (size 120 20) |> Stage.named "sft")
    >=> (align world.Preferences |> Stage.steps (size 40 8) |> Stage.named "pref")

let result =
    Experiment.create "findap" start recipe
    |> Experiment.seeds [ for s in 1 .. seeds -> int64 s ]
    |> Experiment.evaluateEach (Capabilities.suites world)
    |> Experiment.run

let capabilities = [ "domain_knowledge"; "domain_task"; "reasoning"; "instruction_following"; "preference"; "general_retention" ]
let stages = [ "base"; "cpt"; "sft"; "pref" ]
let shown (m: string) = not (m = "count" || Results.isUncertainty m)
let summary = Results.summary result |> List.filter (fun x -> List.contains x.Source capabilities && shown x.Metric)
let metricsOf cap = summary |> List.filter (fun x -> x.Source = cap) |> List.map (fun x -> x.Metric) |> List.distinct
let table =
    { Header = "capability" :: "metric" :: stages
      Rows =
        [ for cap in capabilities do
            for m in metricsOf cap ->
                box cap :: box m :: [ for st in stages ->
                                        match summary |> List.tryFind (fun x -> x.Source = cap && x.Metric = m && x.Stage = st) with
                                        | Some x -> Tables.meanCell x
                                        | None -> Tables.missing ] ] }
printfn "FinDAP mini reproduction, %d seeds (mean ± 95%% t half-width):\n%s" seeds (Tables.markdown table)
for a, b in List.pairwise stages do
    for cap in capabilities do
        for m in metricsOf cap do
            let has stage = not (Results.perSeed cap m ("-", stage) result).IsEmpty
            if has a && has b then
              let t = result |> Results.compare cap m ("-", b) ("-", a)
              printfn "%s vs %s, %s %s: %+.3f [%+.3f, %+.3f], paired t p = %.4f, Wilcoxon p = %.4f" b a cap m t.MeanDifference t.Difference.Lower t.Difference.Upper t.TP t.WilcoxonP
let caption = $"Capabilities after each stage of the FinDAP recipe ({(summary |> List.head).Interval})"
Tables.saveWith (Provenance.ofResult result) outDir "findap" caption "tab:findap" table |> ignore
let primary = [ for cap in capabilities do match metricsOf cap with m :: _ -> yield! summary |> List.filter (fun x -> x.Source = cap && x.Metric = m) | [] -> () ]
let figure = Figures.capabilityByStageOverSeeds "FinDAP recipe" "score (first metric of each capability)" primary |> PaperStyle.apply FullWidth
Figures.saveHtmlWith (Provenance.ofResult result) outDir "findap" figure |> ignore
printfn "wrote %s" (Path.GetFullPath outDir)
