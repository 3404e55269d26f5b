/// The Slurm backend and the PostgreSQL run store, against a real single-node Slurm (munged, slurmctld,
/// slurmd) and a real PostgreSQL server, both started by the project's own set-up scripts and stopped at the end.
module Research.Tests.ClusterTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Research.Cluster
open Research.Runs
open Research.Tests.TestUtil


/// Runs a command, returns (exit code, stdout, stderr).
let private exec (file: string) (args: string list) (env: (string * string) list) =
    let psi = ProcessStartInfo(file, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
    for a in args do psi.ArgumentList.Add a
    for k, v in env do psi.Environment[k] <- v
    use p = Process.Start psi
    let o = p.StandardOutput.ReadToEndAsync()
    let e = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, o.Result, e.Result

let private setup (script: string) (args: string list) =
    let code, o, e = exec "bash" (Path.Combine(repoRoot, "scripts", "setup", script) :: args) []
    if code <> 0 then failwith $"{script} {args}: exit {code}\n{o}\n{e}"
    o.Trim().Split('\n') |> Array.last

let private cli = Path.Combine(AppContext.BaseDirectory, "research.dll")

let private research (args: string list) (env: (string * string) list) =
    exec "dotnet" (cli :: args) (("RESEARCH_THREADS", "1") :: env)

/// A six-point sweep over the replay share, tiny enough that an element is mostly process start-up.
let private sweepText = """
open Research
let points = Script.arg fsi.CommandLineArgs "points" 6
let shares = [ 0.0; 0.05; 0.1; 0.2; 0.3; 0.5 ] |> List.take points
let w = World.quick 120 5
let cfg = Research.Models.ModelConfig(VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)
let start = pretrain w.General cfg |> Stage.steps 6 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
let step share = adapt (w.Finance |> replay w.General share) |> Stage.steps (Script.arg fsi.CommandLineArgs "steps" 4) |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 2
let r =
    Experiment.points "cluster-sweep" [ for r in shares -> [ "replay", r ], start |> step r ]
    |> Experiment.seed 3L
    |> Experiment.evaluateEach [ Experiment.heldOutPerplexity w.Finance ]
    |> Experiment.run
for run in r.Runs do
    let a = run.Node "adapt"
    let loss: float = a.Metrics["loss"]
    let ppl: float = a.Evaluations["finance"]["perplexity"]
    printfn "RESULT %s loss=%s ppl=%s" run.Point.Label (loss.ToString("R")) (ppl.ToString("R"))
"""

let private sweepScript (dir: string) =
    let path = Path.Combine(dir, "sweep.fsx")
    File.WriteAllText(path, sweepText)
    path

let private results (output: string) =
    output.Split('\n') |> Array.filter (fun l -> l.StartsWith "RESULT ") |> Array.map (fun l -> l.Trim()) |> Array.sort

/// The local executor's results for the sweep, computed once and shared by the tests below.
let private local =
    lazy (
        let dir = tempDir "cluster-local"
        let code, o, e = research [ "run"; "--workspace"; Path.Combine(dir, "ws"); sweepScript dir ] []
        if code <> 0 then failwith $"local sweep: {o}\n{e}"
        let rows = results o
        if rows.Length <> 6 then failwith $"local sweep printed {rows.Length} results:\n{o}"
        use store = new RunStore(Path.Combine(dir, "ws"))
        rows, store.Count "metrics", store.Count "evaluations")

let private withSlurm (f: (string * string) list -> unit) =
    let dir = tempDir "slurm"
    let conf = setup "slurm.sh" [ "start"; dir; "16911" ]
    try f [ "SLURM_CONF", conf ]
    finally setup "slurm.sh" [ "stop"; dir ] |> ignore

let private withPostgres (f: string -> unit) =
    let dir = tempDir "postgres"
    let conn = setup "postgres.sh" [ "start"; dir; "55441" ]
    try f conn
    finally setup "postgres.sh" [ "stop"; dir ] |> ignore

let private doneTimes (ws: string) =
    Directory.GetFiles(Path.Combine(ws, "nodes"), "done.json", SearchOption.AllDirectories)
    |> Array.map (fun f -> f, File.GetLastWriteTimeUtc f) |> Map.ofArray

[<Tests>]
let tests =
    testList "Cluster" [
        testCase "array index ranges and sbatch options" <| fun _ ->
            Expect.equal (SlurmOptions.Ranges [| 0; 1; 2; 5; 7; 8 |]) "0-2,5,7-8" "ranges"
            Expect.equal (SlurmOptions.Ranges [| 3 |]) "3" "one"
            let o = SlurmOptions(Partition = "gpu", CpusPerTask = 4, GpusPerTask = 1, Memory = "8G", MaxConcurrent = 2, ExtraArgs = [| "--account=lab" |])
            let args = o.SbatchArgs("research-x", [| 0; 1; 2 |], "/w/%a.out") |> List.ofSeq
            for a in [ "--array=0-2%2"; "--partition=gpu"; "--cpus-per-task=4"; "--gpus-per-task=1"; "--mem=8G"; "--account=lab"; "--output=/w/%a.out"; "--parsable" ] do
                Expect.contains args a a
            throwsWith<ArgumentException> (fun () -> SlurmOptions(CpusPerTask = 0).Validate() |> ignore) [ "cpus per task" ] "validated"

        testCase "--on slurm outside research run is refused with what to do" <| fun _ ->
            let e = Research.Pipelines.Experiment.Create("x", [||])
            let opts = Research.Pipelines.ExecutorOptions(Remote = SlurmSubmitter(SlurmOptions()), Workspace = tempDir "noslurm")
            throwsWith<InvalidOperationException> (fun () -> Research.Pipelines.Executor(opts).Run e |> ignore) [ "research run --on slurm" ] "needs the script"

        // A group: the one Slurm controller and PostgreSQL server these tests start; beside other lists.
        testSequencedGroup "cluster-servers" <| testList "servers" [
            testCase "a 6-point sweep on a real Slurm equals the local executor; scancel + resubmit reruns only the killed point" <| fun _ ->
                let expected, _, _ = local.Force()
                withSlurm (fun env ->
                    let dir = tempDir "cluster-slurm"
                    let ws = Path.Combine(dir, "ws")
                    let code, o, e = research [ "run"; "--workspace"; ws; "--on"; "slurm"; "--cpus-per-task"; "1"; "--time"; "10"; sweepScript dir ] env
                    Expect.equal code 0 $"slurm sweep: {o}\n{e}"
                    Expect.equal (results o) expected "the six points' results equal the local executor's, bit for bit"
                    let code, runs, _ = research [ "runs"; "--workspace"; ws ] env
                    Expect.equal code 0 "runs"
                    Expect.stringContains runs "sweep 1  cluster-sweep  6 point(s) on Slurm" "runs lists the sweep"
                    Expect.stringContains runs "6 done" "every element done"
                    Expect.stringContains runs "slurm job 1_" "each run shows its element's job id"

                    // A second sweep (three points, longer adapt): cancel one element while it runs, then resubmit.
                    let dir2 = tempDir "cluster-kill"
                    let ws2 = Path.Combine(dir2, "ws")
                    let script2 = sweepScript dir2
                    let code, o, e = research [ "run"; "--workspace"; ws2; "--on"; "slurm"; "--cpus-per-task"; "1"; "--no-wait"; script2; "--points"; "3"; "--steps"; "150" ] env
                    Expect.equal code 0 $"submitted: {o}\n{e}"
                    Expect.stringContains o "research watch 1" "tells how to follow it"
                    let element k =
                        use store = new RunStore(ws2)
                        store.Elements(1L) |> Seq.find (fun x -> x.Point = k)
                    let sw = Stopwatch.StartNew()
                    while (element 2).State <> ElementStates.Running && sw.Elapsed.TotalSeconds < 120.0 do Threading.Thread.Sleep 200
                    Expect.equal (element 2).State ElementStates.Running "point 2 started"
                    let killed = (element 2).JobId
                    let code, _, e = exec "scancel" [ killed ] env
                    Expect.equal code 0 $"scancel {e}"
                    let code, watched, _ = research [ "watch"; "1"; "--workspace"; ws2; "--poll"; "0.5" ] env
                    Expect.equal code 1 $"watch reports the failure: {watched}"
                    Expect.stringContains watched "2 done, 1 failed" "two finished, one cancelled"
                    Expect.equal (element 2).State ElementStates.Failed "the cancelled element is marked failed"
                    let before = doneTimes ws2
                    let code, o, e = research [ "resubmit"; "1"; "--workspace"; ws2; "--wait"; "--poll"; "0.5" ] env
                    Expect.equal code 0 $"resubmit: {o}\n{e}"
                    Expect.stringContains o "point(s) 2 resubmitted" "only the failed point"
                    Expect.isTrue (element 2).Done "point 2 done after resubmission"
                    Expect.notEqual (element 2).JobId killed "a new job ran it"
                    let after = doneTimes ws2
                    for KeyValue(f, t) in before do
                        Expect.equal after[f] t $"{f} was not rewritten: finished stages were reused"
                    Expect.equal after.Count (before.Count + 1) "only the killed point's adapt stage was trained again"
                    use store = new RunStore(ws2)
                    let runOf k = (store.Elements 1L |> Seq.find (fun x -> x.Point = k)).RunId.Value
                    Expect.equal (store.Nodes(runOf 2) |> Seq.map (fun n -> n.Name, n.Status) |> List.ofSeq) [ "pretrain", "cached"; "adapt", "done" ] "the rerun reused pretrain")

            testCase "the PostgreSQL store: the same sweep from two processes at once loses no row" <| fun _ ->
                let expected, metricRows, evalRows = local.Force()
                withPostgres (fun conn ->
                    let dir = tempDir "cluster-pg"
                    let ws = Path.Combine(dir, "ws")
                    let script = sweepScript dir
                    let start () =
                        let psi = ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
                        for a in [ cli; "run"; "--workspace"; ws; "--store"; conn; script ] do psi.ArgumentList.Add a
                        psi.Environment["RESEARCH_THREADS"] <- "1"
                        Process.Start psi
                    let ps = [ start (); start () ]
                    let outs = ps |> List.map (fun p -> p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync())
                    for p, (o, e) in List.zip ps outs do
                        p.WaitForExit()
                        Expect.equal p.ExitCode 0 $"process: {o.Result}\n{e.Result}"
                        Expect.equal (results o.Result) expected "each process's results equal the local executor's"
                    Expect.isFalse (File.Exists(Path.Combine(ws, RunStore.FileName))) "nothing went to SQLite"
                    use store = new RunStore(ws, conn)
                    Expect.isTrue store.IsPostgres "PostgreSQL store"
                    let runs = store.Runs()
                    Expect.equal runs.Count 12 "6 runs from each process"
                    for r in runs do
                        Expect.equal r.Status "done" $"run {r.Id}"
                        Expect.equal (store.Nodes(r.Id).Count) 2 $"run {r.Id} recorded both stages"
                    Expect.equal (store.Count "metrics") metricRows "every metric row (keyed by stage) that the SQLite store holds"
                    Expect.equal (store.Count "evaluations") (2 * evalRows) "every evaluation row of both processes"
                    let code, o, e = research [ "runs"; "--workspace"; ws; "--store"; conn ] []
                    Expect.equal code 0 $"runs against PostgreSQL: {e}"
                    Expect.stringContains o "run 12  cluster-sweep" "lists the twelve runs")
        ]
    ]
