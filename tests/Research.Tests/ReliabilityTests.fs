/// Defects of issue #20 (fault injection and fuzzing) that no other list covers: the CLI's error path, gc's lock and
/// options, the executor's order of done.json and checkpoint removal, and errors that must name their file.
module Research.Tests.ReliabilityTests

open System
open System.IO
open Expecto
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Runs
open Research.Training
open Research.Tests.TestUtil

let private world = lazy (World.quick 60 5)

/// One pretrain stage of the micro model, 4 steps with a checkpoint at step 2.
let private tiny () =
    let start = pretrain world.Value.General microConfig |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 2
    Experiment.create "tiny" start id |> Experiment.seed 3L

let private run workspace (e: Experiment) = Executor(ExecutorOptions(Workspace = workspace, Log = TextWriter.Null)).Run e

/// A workspace with a run store and one node directory no run references (what gc removes).
let private orphanWorkspace name =
    let ws = tempDir name
    (new RunStore(ws)).Dispose()
    let orphan = Path.Combine(ws, Executor.NodesDir, "adapt-0000000000000000")
    Directory.CreateDirectory(Path.Combine(orphan, "final")) |> ignore
    File.WriteAllText(Path.Combine(orphan, "final", "model.safetensors"), "x")
    ws, orphan

let private gc (args: string list) = Research.Cli.Commands.GcCommand.Execute(Research.Cli.CliArgs.Parse(List.toArray args, [| "dry-run" |]))

let private withStderr (f: unit -> 'a) =
    let saved = Console.Error
    let err = new StringWriter()
    Console.SetError err
    try
        let r = f ()
        r, err.ToString()
    finally Console.SetError saved

[<Tests>]
let tests =
    testSequenced <| testList "Reliability" [
        testCase "a corrupt run store is one line naming the file and exit 1, not a stack trace" <| fun _ ->
            let ws = tempDir "corrupt-store"
            File.WriteAllText(Path.Combine(ws, RunStore.FileName), String.replicate 200 "not a database ")
            let code, err = withStderr (fun () -> Research.Cli.Program.Main [| "runs"; "--workspace"; ws |])
            Expect.equal code 1 "exit 1"
            Expect.stringContains err (Path.Combine(ws, RunStore.FileName)) "names the file"
            Expect.equal (err.Trim().Split('\n').Length) 1 "one line"

        testCase "gc --dry-run=true removes nothing; --dry-run=false and a bare gc do" <| fun _ ->
            let ws, orphan = orphanWorkspace "gc-dry-eq"
            Expect.equal (gc [ "--dry-run=true"; "--workspace"; ws ]) 0 "dry run"
            Expect.isTrue (Directory.Exists orphan) "--dry-run=true keeps it"
            Expect.equal (gc [ $"--workspace={ws}"; "--dry-run=false" ]) 0 "not a dry run"
            Expect.isFalse (Directory.Exists orphan) "--dry-run=false removes it"

        testCase "gc rejects an option it does not know, naming it" <| fun _ ->
            let ws, orphan = orphanWorkspace "gc-unknown"
            throwsWith<Research.Cli.CliException> (fun () -> gc [ "--workspace"; ws; "--dryrun" ] |> ignore) [ "unknown option --dryrun" ] "misspelt flag"
            throwsWith<Research.Cli.CliException> (fun () -> gc [ "--workspace"; ws; "--dry-run=maybe" ] |> ignore) [ "--dry-run"; "maybe" ] "flag with a bad value"
            Expect.isTrue (Directory.Exists orphan) "nothing removed"

        testCase "gc leaves a node whose lock another process holds (a stage being written)" <| fun _ ->
            let ws, orphan = orphanWorkspace "gc-locked"
            let held = new FileStream(orphan + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None)
            try
                Expect.equal (gc [ "--workspace"; ws ]) 0 "gc"
                Expect.isTrue (Directory.Exists orphan) "the running stage is kept"
            finally held.Dispose()
            Expect.equal (gc [ "--workspace"; ws ]) 0 "gc once the lock is released"
            Expect.isFalse (Directory.Exists orphan) "then removed"

        testCase "done.json is written before checkpoints/ goes; leftovers of a kill in between are removed on the next run" <| fun _ ->
            let ws = tempDir "done-first"
            let r = run ws (tiny ())
            let dir = r.Runs[0].Nodes[0].Directory
            Expect.isTrue (File.Exists(Path.Combine(dir, "done.json"))) "done.json"
            Expect.isFalse (Directory.Exists(Path.Combine(dir, "checkpoints"))) "checkpoints removed after it"
            // a kill after done.json but before the removal: the node is done, and the next run tidies up
            Directory.CreateDirectory(Path.Combine(dir, Trainer.LastDir)) |> ignore
            let again = run ws (tiny ())
            Expect.equal again.Runs[0].Nodes[0].Status "cached" "reused"
            Expect.isFalse (Directory.Exists(Path.Combine(dir, "checkpoints"))) "leftover removed"
            // a corrupt done.json names itself
            File.WriteAllText(Path.Combine(dir, "done.json"), "[1, 2")
            throwsWith<InvalidDataException> (fun () -> run ws (tiny ()) |> ignore) [ "done.json" ] "corrupt done.json"

        testCase "JSONL strings with a lone surrogate name the file and line" <| fun _ ->
            let dir = tempDir "surrogate"
            let corpus = Path.Combine(dir, "c.jsonl")
            File.WriteAllLines(corpus, [ """{"text": "fine"}"""; """{"text": "bad \ud800 here"}""" ])
            throwsWith<CorpusException> (fun () -> Corpus.FromJsonl corpus |> ignore) [ $"{corpus}:2"; "surrogate" ] "corpus"
            let sft = Path.Combine(dir, "s.jsonl")
            File.WriteAllLines(sft, [ """{"prompt": "q", "completion": "\udc00"}""" ])
            throwsWith<CorpusException> (fun () -> SftData.Read sft |> ignore) [ $"{sft}:1" ] "sft"

        testCase "a metrics file and a generation_config.json that are not JSON objects name the file" <| fun _ ->
            let dir = tempDir "not-object"
            let metrics = Path.Combine(dir, "metrics.jsonl")
            File.WriteAllLines(metrics, [ """{"step": 1}"""; "[1, 2]" ])
            throwsWith<InvalidDataException> (fun () -> MetricsLog.Read metrics |> ignore) [ $"{metrics}:2"; "JSON object" ] "metrics line"
            let ckpt = Path.Combine(dir, "ckpt")
            use m = microModel 3L
            Checkpoint.Save(ckpt, m, ByteTokenizer.Instance)
            File.WriteAllText(Path.Combine(ckpt, Checkpoint.GenerationConfigFile), "[1]")
            throwsWith<InvalidDataException>
                (fun () -> Research.Pipelines.CheckpointTools.Generate(ckpt, "a", false, null, SamplingOptions(MaxNewTokens = 1)) |> ignore)
                [ Checkpoint.GenerationConfigFile; "JSON object" ] "generation config root"
    ]
