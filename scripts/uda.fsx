// A miniature reproduction of classic unsupervised domain adaptation on the default world's sentiment shift (source:
// the general encyclopedia, target: finance news; severity = share of target examples without the shared cue), over
// seeds. Per severity: source-only baseline, target oracle, DANN, CORAL, MMD, M3SDA, self-training, AdaMatch, TENT
// (continual and episodic), and "CPT first" (adapt on the target text, then classify, then DANN). Reports target accuracy
// as mean ± 95% t half-width, each method against source-only paired by seed, the share of the source-only -> oracle gap
// each recovers, TENT's gain by severity, and ATC's error against the average-confidence baseline; writes tables (.md, .tex)
// and figures (.html) into --out and says which of the papers' claims hold here.
//   research run scripts/uda.fsx [--tiny] [--seeds 5] [--out uda]
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open System.IO
open Research
open Research.Data
open Research.Models
open Research.Pipelines

let args = fsi.CommandLineArgs
let tiny = args |> Array.contains "--tiny"
// "CPT first" (adapt on the target text -> classify -> DANN) against "UDA only": on by default, off with --tiny unless --cpt.
let withCpt = not tiny || args |> Array.contains "--cpt"
let seeds = Script.arg args "seeds" 5
let outDir = Script.arg args "out" "uda"
let size (full: int) (small: int) = if tiny then small else full
let severities =
    (Script.arg args "severities" (if tiny then "0.2,0.8" else "0.2,0.5,0.8")).Split ',' |> Array.map (fun x -> float (x.Trim())) |> List.ofArray
let examples = size 600 120                      // training examples per domain; the test holds half as many

// A small byte-level Llama pretrained on the world's general text: the body every classifier starts from.
let world = World.create (size 1200 300) 7
let model =
    if tiny then ModelConfig(HiddenSize = 32, IntermediateSize = 96, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128)
    else tinyModel ()
let start = pretrain world.General model |> Stage.steps (size 300 60) |> Stage.blockLength 64 |> Stage.named "base"

let cls, udaSteps, tentSteps, cptSteps = size 300 100, size 150 30, size 20 8, size 100 30
let batch, clsBatch = size 16 8, 16
let lr = 2e-3
let methods = [ Dann; Coral; Mmd; M3sda; SelfTraining; AdaMatch ]
let arms =
    [ "source_only"; "oracle"; "dann"; "coral"; "mmd"; "m3sda"; "self_training"; "adamatch"; "tent" ]
    @ (if withCpt then [ "cpt_source_only"; "cpt_dann" ] else [])

let experimentAt (severity: float) =
    let dir = Path.Combine(Path.GetFullPath outDir, "data", $"severity-{severity:R}")
    let bench = Research.Stages.Uda.ShiftBenchmark(examples, severity, 1)
    let files = bench.Write dir
    let targetText =
        Data.documents "target_text" (fun () -> [ for x in bench.Train do if x.Domain = "finance" then Document(x.Text, "target_text", x.Line) ])
    let sourceOnly = classify files.Train |> Stage.steps cls |> Stage.lr lr |> Stage.batch clsBatch |> Stage.named "source_only"
    let recipe (b: Stage) =
        let so = sourceOnly b
        let cpt = (adapt (domain targetText) |> Stage.steps cptSteps |> Stage.blockLength 64 |> Stage.named "cpt") b
        let cptSo = (classify files.Train |> Stage.steps cls |> Stage.lr lr |> Stage.batch clsBatch |> Stage.named "cpt_source_only") cpt
        [ yield so
          yield (classifyOracle files.Train |> Stage.steps cls |> Stage.lr lr |> Stage.batch clsBatch) b
          for m in methods do yield (uda m files.Train |> Stage.steps udaSteps |> Stage.batch batch) so
          yield (tent files.Train |> Stage.steps tentSteps |> Stage.batch batch) so
          if withCpt then yield (dann files.Train |> Stage.steps udaSteps |> Stage.batch batch |> Stage.named "cpt_dann") cptSo ]
    Experiment.createBranches $"uda-severity-{severity:R}" start recipe
    |> Experiment.seeds [ for s in 1 .. seeds -> int64 s ]
    |> Experiment.evaluateAfter arms
    |> fun e -> e.Evaluate(Uda.suiteWithAtc "target" files.Test "finance" "general", Uda.tentSuite "target_tent_episodic" files.Test "finance" 1 1e-3)

let results = [ for s in severities -> s, Experiment.run (experimentAt s) ]

let summaryOf (r: ExperimentResult) = Results.summary r
let cell (r: ExperimentResult) source metric stage =
    match summaryOf r |> List.tryFind (fun x -> x.Stage = stage && x.Source = source && x.Metric = metric) with
    | Some x -> Some x
    | None -> None
let mean r source metric stage = match cell r source metric stage with Some x -> x.Mean | None -> nan

// 1. Target accuracy per arm and severity.
let accuracyTable =
    { Header = "arm" :: [ for s, _ in results -> $"severity {s}" ]
      Rows =
        [ for arm in arms ->
            box arm :: [ for _, r in results -> match cell r "target" "accuracy" arm with Some x -> Tables.meanCell x | None -> Tables.missing ] ]
        @ [ box "tent (episodic, at evaluation)" :: [ for _, r in results -> match cell r "target_tent_episodic" "accuracy" "source_only" with Some x -> Tables.meanCell x | None -> Tables.missing ] ] }
let interval = (summaryOf (snd results.Head) |> List.find (fun x -> x.Source = "target")).Interval
printfn "Target (finance) accuracy, %s:\n%s" interval (Tables.markdown accuracyTable)

// 2. Each method against source-only, paired by seed; and the share of the source-only -> oracle gap it recovers.
let compare (r: ExperimentResult) source (a: string) (b: string) = r |> Results.compare source "accuracy" ("-", a) ("-", b)
let verdicts = ResizeArray<string>()
// "Better" means a positive mean difference with paired t p < 0.05. Wilcoxon's exact two-sided p is printed beside it; with
// 5 seeds it cannot go below 2/32 = 0.0625, so it is reported, not required.
let better (t: Research.Eval.PairedTest) = t.MeanDifference > 0.0 && t.TP < 0.05
let claim (text: string) (holds: bool) (numbers: string) =
    verdicts.Add($"""- {text}: {(if holds then "holds" else "NOT reproduced")} ({numbers})""")
printfn "\nEach arm minus source_only on target accuracy (paired by seed):"
for s, r in results do
    let so, oracle = mean r "target" "accuracy" "source_only", mean r "target" "accuracy" "oracle"
    printfn "severity %g: source_only %.3f, oracle %.3f (gap %.3f)" s so oracle (oracle - so)
    for arm in arms |> List.filter (fun a -> a <> "source_only") do
        let t = compare r "target" arm "source_only"
        printfn "  %-16s %+.3f [%+.3f, %+.3f]  paired t p = %.4f  Wilcoxon p = %.4f  gap recovered %5.1f%%"
            arm t.MeanDifference t.Difference.Lower t.Difference.Upper t.TP t.WilcoxonP (100.0 * t.MeanDifference / (oracle - so))

let gain r arm = (compare r "target" arm "source_only")
let at (sev: float) = results |> List.find (fun (s, _) -> s = sev) |> snd
for s, r in results do
    let so, oracle = mean r "target" "accuracy" "source_only", mean r "target" "accuracy" "oracle"
    claim $"severity {s}: there is a source-only drop to recover (oracle above source-only)" (oracle - so > 0.02) $"oracle {oracle:F3}, source-only {so:F3}"
    for arm in [ "dann"; "coral"; "mmd"; "m3sda"; "self_training"; "adamatch" ] do
        let t = gain r arm
        claim $"severity {s}: {arm} recovers part of the drop (better than source-only, paired t p < 0.05)" (better t)
            (sprintf "%+.3f [%+.3f, %+.3f], t p %.4f, Wilcoxon p %.4f" t.MeanDifference t.Difference.Lower t.Difference.Upper t.TP t.WilcoxonP)
    let best xs = xs |> List.map (fun a -> mean r "target" "accuracy" a) |> List.max
    let st, al = best [ "self_training"; "adamatch" ], best [ "dann"; "coral"; "mmd"; "m3sda" ]
    claim $"severity {s}: pseudo-labelling (best of self-training, AdaMatch) beats alignment (best of DANN, CORAL, MMD, M3SDA)" (st > al) $"{st:F3} vs {al:F3}"

// 3. TENT: helps under mild shift, less (or hurts) under severe shift.
printfn "\nTENT minus source_only by severity:"
let tentGain (r: ExperimentResult) = (compare r "target" "tent" "source_only").MeanDifference
let episodicGain (r: ExperimentResult) =
    Results.perSeed "target_tent_episodic" "accuracy" ("-", "source_only") r |> Map.toList
    |> List.map (fun (seed, v) -> v - (Results.perSeed "target" "accuracy" ("-", "source_only") r)[seed]) |> List.average
for s, r in results do printfn "  severity %g: continual %+.3f, episodic %+.3f" s (tentGain r) (episodicGain r)
let mild, severe = at (List.head severities), at (List.last severities)
let mildTent = gain mild "tent"
claim "TENT (continual) helps under the mildest shift" (better mildTent) (sprintf "%+.3f, t p %.4f" (tentGain mild) mildTent.TP)
claim "TENT's gain shrinks or turns negative under the most severe shift" (tentGain severe < tentGain mild)
    (sprintf "%+.3f at %g vs %+.3f at %g" (tentGain mild) (List.head severities) (tentGain severe) (List.last severities))

// 4. ATC tracks the true accuracy across severities better than the average confidence.
printfn "\nAccuracy prediction on the target (stage source_only): true, ATC, average confidence, |errors|"
let errorsOf metric = [ for _, r in results do for KeyValue (_, v) in Results.perSeed "target" metric ("-", "source_only") r -> v ]
for s, r in results do
    printfn "  severity %g: true %.3f  ATC %.3f  AC %.3f   |ATC - true| %.3f  |AC - true| %.3f" s
        (mean r "target" "accuracy" "source_only") (mean r "target" "atc_accuracy" "source_only") (mean r "target" "avg_conf_accuracy" "source_only")
        (mean r "target" "atc_error" "source_only") (mean r "target" "avg_conf_error" "source_only")
let atcMae, acMae = List.average (errorsOf "atc_error"), List.average (errorsOf "avg_conf_error")
let atcTest = Research.Eval.Statistics.Paired(List.toArray (errorsOf "avg_conf_error"), List.toArray (errorsOf "atc_error"))
printfn "  over all severities and seeds: ATC MAE %.3f, average-confidence MAE %.3f (AC - ATC %+.3f, paired t p %.4f, Wilcoxon p %.4f)"
    atcMae acMae atcTest.MeanDifference atcTest.TP atcTest.WilcoxonP
claim "ATC predicts the target accuracy with a smaller mean absolute error than the average confidence" (atcMae < acMae) $"MAE {atcMae:F3} vs {acMae:F3}, Wilcoxon p {atcTest.WilcoxonP:F4}"
let trueAcc = [ for _, r in results -> mean r "target" "accuracy" "source_only" ]
let atcAcc = [ for _, r in results -> mean r "target" "atc_accuracy" "source_only" ]
let decreasing xs = xs |> List.pairwise |> List.forall (fun (a, b) -> b < a)
claim "ATC's prediction falls with severity as the true accuracy does" (decreasing trueAcc && decreasing atcAcc) $"true {trueAcc}, ATC {atcAcc}"

// 5. CPT first against UDA only.
if withCpt then
  for s, r in results do
    let t = compare r "target" "cpt_dann" "dann"
    printfn "severity %g: CPT first (cpt_dann) minus UDA only (dann): %+.3f [%+.3f, %+.3f], Wilcoxon p %.4f" s t.MeanDifference t.Difference.Lower t.Difference.Upper t.WilcoxonP

printfn "\nClaims at this scale (%d seeds, %d examples per domain):\n%s" seeds examples (System.String.Join("\n", verdicts))

// Tables and figures.
let provenance = Provenance.ofResult (snd results.Head)
Tables.saveWith provenance outDir "uda-accuracy" $"Target accuracy under the general-to-finance shift ({interval})" "tab:uda-accuracy" accuracyTable |> ignore
let series (source: string) (metric: string) (stage: string) =
    [ for s, r in results do match cell r source metric stage with Some x -> yield s, x.Mean, x.Lower, x.Upper | None -> () ]
let accuracyFigure =
    Figures.sweepOverSeeds "Target accuracy by shift severity" "severity" "target accuracy" interval
        [ for arm in arms -> arm, series "target" "accuracy" arm ] |> PaperStyle.apply FullWidth
Figures.saveHtmlWith provenance outDir "uda-accuracy" accuracyFigure |> ignore
let tentFigure =
    Figures.sweepOverSeeds "TENT against source-only" "severity" "target accuracy" interval
        [ "source_only", series "target" "accuracy" "source_only"; "tent (continual)", series "target" "accuracy" "tent"
          "tent (episodic)", series "target_tent_episodic" "accuracy" "source_only" ] |> PaperStyle.apply FullWidth
Figures.saveHtmlWith provenance outDir "uda-tent" tentFigure |> ignore
let atcFigure =
    Figures.sweepOverSeeds "Predicted and true target accuracy (source-only classifier)" "severity" "accuracy" interval
        [ "true", series "target" "accuracy" "source_only"; "ATC", series "target" "atc_accuracy" "source_only"
          "average confidence", series "target" "avg_conf_accuracy" "source_only" ] |> PaperStyle.apply FullWidth
Figures.saveHtmlWith provenance outDir "uda-atc" atcFigure |> ignore
printfn "wrote %s" (Path.GetFullPath outDir)
