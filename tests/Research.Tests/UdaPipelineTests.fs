/// One tiny UDA pipeline end to end: adapt -> classify -> dann -> tent on a micro model, evaluated with ATC; cached on a re-run.
module Research.Tests.UdaPipelineTests

open System.IO
open Expecto
open Research
open Research.Models
open Research.Pipelines
open Research.Stages.Uda
open Research.Tests.TestUtil

[<Tests>]
let tests =
    testSequencedGroup Groups.inProcess <| testList "UdaPipeline" [
        testCase "adapt, classify, dann, tent compose as one pipeline; heads in HF layout, TENT moves only the norms, a re-run is cached" <| fun _ ->
            let dir = tempDir "uda-pipeline"
            let bench = Uda.benchmarkIn (Path.Combine(dir, "bench")) 40 0.5 1
            let parent = Path.Combine(dir, "parent")
            (use m = microModel 21L in Checkpoint.Save(parent, m, Research.Data.ByteTokenizer.Instance))
            let w = World.quick 40 1
            let recipe =
                (adapt (domain w.Finance) |> Stage.steps 3 |> Stage.batch 4 |> Stage.blockLength 32 |> Stage.named "cpt")
                >=> (classify bench.Train |> Stage.steps 12 |> Stage.batch 8 |> Stage.logEvery 4 |> Stage.checkpointEvery 8)
                >=> (dann bench.Train |> Stage.steps 6 |> Stage.batch 8 |> Stage.logEvery 3 |> Stage.checkpointEvery 3)
                >=> (tent bench.Train |> Stage.steps 3 |> Stage.batch 8 |> Stage.logEvery 3 |> Stage.checkpointEvery 3)
            let e =
                Experiment.create "uda-tiny" (fromCheckpoint parent) recipe
                |> Experiment.seed 2L
                |> Experiment.evaluateAfter [ "classify"; "dann"; "tent" ]
                |> fun e -> e.Evaluate(Uda.suiteWithAtc "target" bench.Test "finance" "general")
            let ws = Path.Combine(dir, "ws")
            let run () = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
            let r = run ()
            let node (name: string) = r.Runs[0].Node name
            for name in [ "cpt"; "classify"; "dann"; "tent" ] do Expect.equal (node name).Status "done" $"{name} ran"
            Expect.isTrue ((node "dann").Metrics.ContainsKey "dann_lambda" && (node "dann").Metrics.ContainsKey "domain_accuracy") "DANN's metrics"
            for name in [ "classify"; "dann"; "tent" ] do
                let s = (node name).Evaluations["target"]
                for m in [ "accuracy"; "macro_f1"; "ece"; "atc_accuracy"; "avg_conf_accuracy"; "source_accuracy" ] do
                    Expect.isTrue (s[m] >= 0.0 && s[m] <= 1.0) $"{name} {m} = {s[m]} is a share"
                Expect.equal s["count"] 20.0 "the target test: size / 2"
                Expect.equal s["ece_bins"] 15.0 "ECE's bin count is reported"
            let load (name: string) = Checkpoint.LoadModel((node name).Checkpoint)
            use before = load "dann"
            use after = load "tent"
            let norms = ClassifyStage.NormParameters after
            let changed =
                Seq.zip (before.named_parameters()) (after.named_parameters())
                |> Seq.filter (fun (struct (_, a), struct (_, b)) -> maxAbsDiff a b > 0.0)
                |> Seq.map (fun (_, struct (n, b)) -> n, b)
                |> List.ofSeq
            Expect.isNonEmpty changed "tent changed something"
            Expect.isTrue (changed |> List.forall (fun (_, p) -> norms.Contains p)) $"only normalisation weights changed: {List.map fst changed}"
            Expect.equal after.Config.NumLabels (System.Nullable 2) "the head travels down the pipeline"
            let again = run ()
            Expect.isTrue (again.Runs[0].Nodes |> Seq.forall (fun n -> n.Status = "cached")) "every stage reused"
    ]
