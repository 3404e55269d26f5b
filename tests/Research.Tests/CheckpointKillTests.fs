/// Issue #20, tests (a): a training run killed at every step of every checkpoint save (and of final/) resumes to the
/// metrics and weights of a run never killed; a pipeline killed at every rename that finishes a stage (its final/, its
/// done.json) or writes a merge's output reruns to the same results without retraining a finished stage. A kill is a
/// copy of the directory taken by AtomicFile's fault seams.
module Research.Tests.CheckpointKillTests

open System
open System.IO
open Expecto
open Research
open Research.Pipelines
open Research.Stages.Merge
open Research.Data
open Research.Stages
open Research.Training
open Research.Runs
open Research.Tests.TestUtil

let private blocks = lazy (Packing.Pack(Research.Data.Synthetic.QuickWorld.General(60, 1), ByteTokenizer.Instance, 32))

let private config =
    TrainConfig(Steps = 12, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, EvalEvery = 0, CheckpointEvery = 4, Seed = 5L)

let private objective () = Adapt.Pretrain(blocks.Value, config, "kill")

let private train seed dir =
    use m = microModel seed
    let r = Trainer.Run(m, ByteTokenizer.Instance, objective (), config, dir, null, TextWriter.Null)
    r.ResumedFrom, File.ReadAllBytes(Path.Combine(dir, Trainer.FinalDir, "model.safetensors"))

/// Copies a workspace as a kill leaves it: every file but the node locks, which the running stage holds (a kill releases them).
let rec private copyWorkspace (src: string) (dst: string) =
    Directory.CreateDirectory dst |> ignore
    for f in Directory.GetFiles src do
        if not (f.EndsWith ".lock") then File.Copy(f, Path.Combine(dst, Path.GetFileName f))
    for d in Directory.GetDirectories src do copyWorkspace d (Path.Combine(dst, Path.GetFileName d))

/// Runs f with a copy of `dir` taken at every step of a directory replace and before and after every rename of a done.json.
let private withStageKills (dir: string) (f: unit -> unit) =
    let copies = ResizeArray()
    let take (step: string) =
        let copy = tempDir "stage-killed"
        copyWorkspace dir copy
        copies.Add((step, copy))
    AtomicFile.FaultHook.Value <- Action<string>(fun step -> take $"directory {step}")
    AtomicFile.FileFaultHook.Value <- Action<string, string>(fun path step ->
        if Path.GetFileName path = "done.json" then take $"{Path.GetFileName(Path.GetDirectoryName path)}/done.json {step}")
    try f ()
    finally
        AtomicFile.FaultHook.Value <- null
        AtomicFile.FileFaultHook.Value <- null
    List.ofSeq copies

let private world = lazy (World.quick 60 5)

/// pretrain, two adapt branches (without and with replay), their task-arithmetic merge: 4 steps each, no checkpoint.
let private pipeline () =
    let w = world.Value
    let start = pretrain w.General microConfig |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
    let branch (name: string) mix = adapt mix |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named name
    let recipe = mergeBranches (TaskArithmetic { lambda = 1.0 }) [ branch "plain" (domain w.Finance); branch "replay" (replay w.General 0.5 w.Finance) ] |> Stage.named "merge"
    Experiment.create "stage-kills" start recipe |> Experiment.seed 3L

let private runIn workspace = Executor(ExecutorOptions(Workspace = workspace, Log = TextWriter.Null)).Run(pipeline ())

/// What a pipeline run ends with, per stage: its done.json metrics and its final weights.
let private outcome (r: ExperimentResult) =
    [ for n in r.Runs[0].Nodes ->
        n.Name, (n.Metrics |> Seq.map (fun kv -> kv.Key, kv.Value) |> Seq.sort |> List.ofSeq),
        File.ReadAllBytes(Path.Combine(n.Directory, Trainer.FinalDir, "model.safetensors")) ]

[<Tests>]
let tests =
    testList "ReliabilityKills" [
        for twoRenames in [ false; true ] do
            testCase $"a run killed at any step of a checkpoint save resumes to the same metrics and weights (two renames: {twoRenames})" <| fun _ ->
                let straight = tempDir "straight"
                let _, weights = train 23L straight
                let dir = tempDir "killed"
                let kills = AtomicDirectoryTests.withKillCopies twoRenames dir (fun () -> train 23L dir |> ignore)
                Expect.equal kills.Length (if twoRenames then 2 + 4 + 2 else 2 + 3 + 2) "every step of the saves at 4 and 8 and of final/"
                let resumedFrom =
                    [ for step, copy in kills do
                        let from, resumed = train 23L copy              // the stage's own init: a kill before the first checkpoint restarts
                        Expect.equal (metricsWithoutTime (Path.Combine(copy, Trainer.MetricsFile))) (metricsWithoutTime (Path.Combine(straight, Trainer.MetricsFile)))
                            $"killed after '{step}': same metrics"
                        Expect.isTrue (resumed = weights) $"killed after '{step}': same final weights"
                        from ]
                // the save at 4 is in once its directory is moved in; the save at 8 once exchanged (or moved in)
                let expected = if twoRenames then [ 0L; 4L; 4L; 4L; 8L; 8L; 8L; 8L ] else [ 0L; 4L; 4L; 8L; 8L; 8L; 8L ]
                Expect.equal resumedFrom expected "resumed from the checkpoint each kill left"

        testCase "a pipeline killed at any rename of a finished stage or of its merge's output reruns to the same results, retraining no finished stage" <| fun _ ->
            let straight = runIn (tempDir "stages-straight")
            let expected = outcome straight
            let dir = tempDir "stages-killed"
            let kills = withStageKills dir (fun () -> runIn dir |> ignore)
            // four stages: final/ filled and moved in, done.json written and renamed
            Expect.equal kills.Length (4 * 4) "every rename of the four stages"
            let finishedAt = ResizeArray()
            for step, copy in kills do
                let finished =
                    set [ for d in Directory.GetDirectories(Path.Combine(copy, Executor.NodesDir)) do
                            if File.Exists(Path.Combine(d, "done.json")) then Path.GetFileName d ]
                finishedAt.Add finished.Count
                let again = runIn copy
                Expect.equal (outcome again) expected $"killed after '{step}': the same metrics and weights"
                for n in again.Runs[0].Nodes do
                    if finished.Contains(Path.GetFileName n.Directory) then Expect.equal n.Status "cached" $"killed after '{step}': {n.Name} was finished and is not retrained"
                let leftovers = Directory.GetFileSystemEntries(copy, "*.tmp", SearchOption.AllDirectories)
                Expect.isEmpty leftovers $"killed after '{step}': no temp file or directory left after the rerun"
            Expect.equal (List.ofSeq finishedAt) [ for s in 0 .. 3 do yield! [ s; s; s; s + 1 ] ] "a stage is finished once its done.json is renamed in"

        for twoRenames in [ false; true ] do
            testCase $"a merge killed at any step of replacing its output, then run again, writes the output of a merge never killed (two renames: {twoRenames})" <| fun _ ->
                let inputs = tempDir "merge-kill-inputs"
                let model i =
                    let d = Path.Combine(inputs, $"m{i}")
                    use m = microModel (int64 i)
                    Research.Models.Checkpoint.Save(d, m, ByteTokenizer.Instance)
                    d
                let a, b = model 1, model 2
                let config (w: float) = MergeConfig.FromYaml $"merge_method: linear\nmodels:\n  - model: {a}\n  - model: {b}\n    parameters: {{weight: {w}}}\n"
                let straight = Path.Combine(tempDir "merge-straight", "out")
                StreamingMerge.Run(config 3.0, straight) |> ignore
                let files (d: string) = [ for f in Directory.GetFiles d |> Array.sort -> Path.GetFileName f, File.ReadAllBytes f ]
                let parent = tempDir "merge-killed"
                let out = Path.Combine(parent, "out")
                StreamingMerge.Run(config 1.0, out) |> ignore                    // an older output, replaced below
                let kills = AtomicDirectoryTests.withKillCopies twoRenames parent (fun () -> StreamingMerge.Run(config 3.0, out) |> ignore)
                Expect.equal (kills |> List.map fst) (if twoRenames then [ "filled"; "moved-aside"; "moved-in"; "synced" ] else [ "filled"; "exchanged"; "synced" ]) "the steps"
                for step, copy in kills do
                    let again = Path.Combine(copy, "out")
                    StreamingMerge.Run(config 3.0, again) |> ignore
                    Expect.isTrue (files again = files straight) $"killed after '{step}': the rerun writes the same files"
                    Expect.equal (Directory.GetFileSystemEntries copy |> Array.map Path.GetFileName) [| "out" |] $"killed after '{step}': nothing left beside the output"
    ]
