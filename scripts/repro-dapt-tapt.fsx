// Miniature reproduction: domain- then task-adaptive pretraining.
// Paper: "Don't Stop Pretraining: Adapt Language Models to Domains and Tasks" (Gururangan et al., 2020).
// Claimed direction: DAPT (continued pretraining on domain text) followed by TAPT (on the task's unlabeled
// text) beats DAPT alone and TAPT alone on the end task.
//   research run scripts/repro-dapt-tapt.fsx [--tiny] [--seeds 5] [--out DIR] [--world-seed 7] [--general-docs 600]
//                                            [--pretrain-steps 300] [--dapt-steps 200] [--tapt-steps 100]
// End task, measured: held-out perplexity on the task text (the world's tapt.jsonl: news lines and revenue
// figures), not the news-sentiment classification, which is too noisy to rank three variants at this scale.
// As in the paper, DAPT+TAPT spends the DAPT steps and then the TAPT steps; each alone spends its own.
// Writes DIR/dapt-tapt.{html,png,svg,pdf} (task and domain perplexity per variant) and DIR/dapt-tapt.{tex,md}.
// Every variant is trained under each of --seeds seeds; the claims are judged on differences paired by seed
// (Claims), and DIR/dapt-tapt-claims.{tex,md} holds them. Exit code 0 when DAPT+TAPT beat both, 3 when not.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open Research

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let worldSeed = arg "world-seed" 7
let seeds = arg "seeds" 5
let outDir = arg "out" "repro-dapt-tapt"
let daptSteps = arg "dapt-steps" (if tiny then 40 else 200)
let taptSteps = arg "tapt-steps" (if tiny then 20 else 100)

let world = World.create (arg "general-docs" (if tiny then 120 else 600)) worldSeed
let start =
    pretrain world.General (tinyModel ()) |> Stage.steps (arg "pretrain-steps" (if tiny then 20 else 300))
    |> fun s -> if tiny then s |> Stage.evalEvery 0 else s
let quiet (s: Step) = s |> Stage.evalEvery 0
let dapt = adapt (domain world.Domain) |> Stage.steps daptSteps |> Stage.checkpointEvery daptSteps |> quiet |> Stage.named "dapt"
let tapt name = adapt (domain world.Tapt) |> Stage.steps taptSteps |> Stage.checkpointEvery taptSteps |> quiet |> Stage.named name

let result =
    Experiment.createBranches "repro-dapt-tapt" start (fun s -> let d = dapt s in [ d; tapt "tapt" s; tapt "dapt+tapt" d ])
    |> Experiment.seeds [ for s in 1 .. seeds -> int64 s ]
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Tapt; Experiment.heldOutPerplexity world.Domain ]
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

/// Held-out perplexity on suite after stage name, per seed.
let ppl (name: string) suite = result |> Claims.perSeedAll (fun run -> (run.Node name).Evaluations[suite]["perplexity"])
let variants = [ "pretrain"; "dapt"; "tapt"; "dapt+tapt" ]
let rows = [ for v in variants -> v, Claims.summary (ppl v "tapt"), Claims.summary (ppl v "domain") ]
let caption = (rows |> List.head |> fun (_, t, _) -> t.Describe())

Figures.capabilityByStage $"DAPT and TAPT: held-out perplexity by variant (lower is better; {caption})" "perplexity"
    [ for v, t, d in rows do
        yield "task text (tapt)", v, t.Mean
        yield "domain text", v, d.Mean ]
|> Figures.save outDir "dapt-tapt" |> ignore

let table =
    { Header = [ "variant"; "task ppl"; "domain ppl" ]
      Rows = [ for v, t, d in rows -> [ box v; Tables.intervalCell t; Tables.intervalCell d ] ] }
Tables.save outDir "dapt-tapt" $"DAPT, TAPT and DAPT then TAPT from one pretrained model: held-out perplexity on task and domain text, {caption}" "tab:dapt-tapt" table |> ignore
printfn "%s" (Tables.markdown table)

printfn "claim (Gururangan et al., 2020): DAPT then TAPT beats DAPT alone and TAPT alone on the end task (here: held-out task-text perplexity); %d seeds" seeds
let verdicts =
    Claims.report
        [ for other in [ "dapt"; "tapt" ] ->
            Claims.paired $"end task, dapt+tapt vs {other}" $"task ppl(dapt+tapt) - task ppl({other})" Below (ppl "dapt+tapt" "tapt") (ppl other "tapt") ]
Tables.save outDir "dapt-tapt-claims" $"DAPT then TAPT: claims over {seeds} seeds (paired by seed)" "tab:dapt-tapt-claims" (Claims.table verdicts) |> ignore
printfn "figures and tables in %s" (System.IO.Path.GetFullPath outDir)
if not (verdicts |> List.forall (fun v -> v.Held)) then exit 3
