module Research.Tests.ExperimentTests

open System
open System.IO
open System.Diagnostics
open Expecto
open Research
open Research.Pipelines
open Research.Runs
open Research.Tests.TestUtil

let private world = World.quick 120 5

let private micro = microConfig

/// pretrain -> adapt "a" -> adapt "b", each a few steps of the micro model.
let private chain (lrB: float) =
    let start = pretrain world.General micro |> Stage.steps 6 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
    let step name = adapt (world.Finance |> replay world.General 0.25) |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named name
    Experiment.create "chain" start (step "a" >=> (step "b" |> Stage.lr lrB))
    |> Experiment.seed 11L

let private quietRun workspace (e: Experiment) = Executor(ExecutorOptions(Workspace = workspace, Log = TextWriter.Null)).Run e

let private statuses (r: ExperimentResult) = [ for n in r.Runs[0].Nodes -> n.Name, n.Status ]

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Experiments" [
        testCase "the quick start is defined once: script and notebook call Experiment.quickStart, keyed by its options" <| fun _ ->
            for file in [ Path.Combine(repoRoot, "scripts", "quickstart.fsx"); Path.Combine(repoRoot, "notebooks", "quickstart.ipynb") ] do
                let text = File.ReadAllText file
                Expect.stringContains text "Experiment.quickStart" $"{file} runs the one definition"
                Expect.isFalse (text.Contains "pretrain world.General" || text.Contains "createBranches") $"{file} does not define its own"
            let sizes = QuickStartOptions(Seed = 3, GeneralDocuments = 240, PretrainSteps = 20, AdaptSteps = 60, CheckpointEvery = 20, TuneSteps = 10, AlignSteps = 5)
            let keys (e: Experiment) = [ for leaf in e.Points[0].Leaves -> leaf.Name, Executor.Key(leaf, e.Seed) ]
            let a = keys (Experiment.quickStart sizes)
            Expect.equal (List.map fst a) [ "adapt-no-replay"; "align" ] "two branches: no replay, and replay -> tune -> align"
            Expect.equal (keys (Experiment.quickStart sizes)) a "same options, same keys"
            let b = keys (Experiment.quickStart (QuickStartOptions(Seed = 3, GeneralDocuments = 240, PretrainSteps = 20, AdaptSteps = 60, CheckpointEvery = 20, TuneSteps = 10, AlignSteps = 5, Replay = 0.25)))
            Expect.equal (snd b[0]) (snd a[0]) "the no-replay branch is untouched by the replay share"
            Expect.notEqual (snd b[1]) (snd a[1]) "the replay branch is keyed by its share"

        testCase "a rerun reuses every stage; a changed config re-runs that stage and its descendants only" <| fun _ ->
            let ws = tempDir "chain"
            Expect.equal (statuses (quietRun ws (chain 1e-3))) [ "pretrain", "done"; "a", "done"; "b", "done" ] "first run"
            Expect.equal (statuses (quietRun ws (chain 1e-3))) [ "pretrain", "cached"; "a", "cached"; "b", "cached" ] "rerun"
            Expect.equal (statuses (quietRun ws (chain 5e-4))) [ "pretrain", "cached"; "a", "cached"; "b", "done" ] "only b changed"
            use store = new RunStore(ws)
            Expect.equal (store.Runs().Count) 3 "three runs recorded"
            Expect.equal (store.Nodes(3L) |> Seq.map (fun n -> n.Status) |> List.ofSeq) [ "cached"; "cached"; "done" ] "store statuses"
            let b = store.Nodes(3L)[2]
            Expect.isGreaterThan (store.Metrics(b.Key).Count) 0 "metrics recorded"
            Expect.equal (RerunReason.Recorded b.Checkpoint) "Train.LearningRate 0.001 -> 0.0005" "why b was not reused (research runs shows it)"
            Expect.equal (RerunReason.Recorded (store.Nodes(1L).[0].Checkpoint)) "no earlier run of this stage" "the first run's reason"

        testCase "seeds as a dimension: one run per seed, cached per seed, summarized with a t interval and paired" <| fun _ ->
            let ws = tempDir "seeds"
            let start = pretrain world.General micro |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let tuned = adapt (domain world.Finance) |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named "adapt"
            let e =
                Experiment.create "seeds" start tuned
                |> Experiment.seeds [ 3L; 4L; 5L ]
                |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance ]
            let r = quietRun ws e
            Expect.equal [ for run in r.Runs -> run.Seed ] [ 3L; 4L; 5L ] "one run per seed, in order"
            let keys = [ for run in r.Runs -> run.Node("adapt").Key ]
            Expect.equal (List.distinct keys |> List.length) 3 "each seed keys its own stages"
            let again = quietRun ws e
            Expect.equal [ for run in again.Runs do for n in run.Nodes -> n.Status ] (List.replicate 6 "cached") "a rerun reuses every seed's stages"
            use store = new RunStore(ws)
            Expect.equal [ for run in store.Runs() |> Seq.truncate 3 -> run.Seed ] [ 3L; 4L; 5L ] "the store records each run's seed"
            let summary = Results.summary r |> List.filter (fun x -> x.Source = "finance" && x.Metric = "perplexity")
            Expect.equal [ for x in summary -> x.Stage, x.Seeds ] [ "pretrain", 3; "adapt", 3 ] "one summary row per stage, over 3 seeds"
            let adaptValues = [| for run in r.Runs -> run.Node("adapt").Evaluations["finance"]["perplexity"] |]
            let expected = Research.Eval.Statistics.TInterval adaptValues
            let row = summary |> List.find (fun x -> x.Stage = "adapt")
            Expect.equal (row.Mean, row.Lower, row.Upper) (expected.Mean, expected.Lower, expected.Upper) "the summary is the t interval of the seeds' values"
            Expect.equal row.Interval "mean and 95% t interval over 3 seeds" "labelled"
            let test = Results.compare "finance" "perplexity" ("-", "adapt") ("-", "pretrain") r
            Expect.equal test.N 3 "paired over the three seeds"
            let pre = [| for run in r.Runs -> run.Node("pretrain").Evaluations["finance"]["perplexity"] |]
            Expect.floatClose Accuracy.veryHigh test.MeanDifference (Array.average (Array.map2 (-) adaptValues pre)) "a - b, paired by seed"
            // The report over seeds (paper style, HTML only): every seed's run, intervals in the tables, the paired summary.
            let reported = RunReport.resolve store "seeds"
            Expect.equal [ for run in reported -> run.Seed ] [ 3L; 4L; 5L ] "the report takes the latest run of each seed"
            let out = Path.Combine(ws, "report")
            let files = RunReport.writeWith { Metrics = []; Paper = true; HtmlOnly = true } store reported out
            Expect.isTrue (files |> List.exists (fun f -> f.EndsWith "eval-perplexity.html")) "a figure per metric"
            let table = File.ReadAllText(Path.Combine(out, "eval-perplexity.md"))
            Expect.stringContains table " ± " "mean ± half-width over seeds"
            Expect.stringContains (File.ReadAllText(Path.Combine(out, "eval-perplexity.tex"))) "over 3 seeds" "the caption says over what"
            let summaryMd = File.ReadAllText(Path.Combine(out, "summary.md"))
            Expect.stringContains summaryMd "adapt vs pretrain, finance perplexity" "the paired comparison"
            Expect.stringContains summaryMd "(3 seeds)" "over the three seeds"
            Expect.stringContains (File.ReadAllText(Path.Combine(out, "results.md"))) "| seed |" "raw values keep their seed"
            Expect.throwsT<ArgumentException> (fun () -> e |> Experiment.seeds [ 6L ] |> ignore) "seeds are given once"
            Expect.throwsT<ArgumentException> (fun () -> Experiment.create "x" start tuned |> Experiment.seeds [ 1L; 1L ] |> ignore) "no repeated seed"

        testCase "a sweep over typed values runs one point per value, sharing the common parent" <| fun _ ->
            let ws = tempDir "sweep"
            let start = pretrain world.General micro |> Stage.steps 6 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let adaptFor share = adapt (world.Finance |> replay world.General share) |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named "a"
            let e = Experiment.points "sweep" [ for r in [ 0.0; 0.5 ] -> [ "a:replay", r ], start |> adaptFor r ] |> Experiment.seed 11L
            let r = quietRun ws e
            Expect.equal r.Runs.Count 2 "two points"
            let keyOf (i: int) name = r.Runs[i].Node(name).Key
            Expect.equal (keyOf 0 "pretrain") (keyOf 1 "pretrain") "pretrain shared"
            Expect.equal r.Runs[1].Nodes[0].Status "cached" "pretrain reused by the second point"
            Expect.notEqual (keyOf 0 "a") (keyOf 1 "a") "a differs by replay"
            Expect.equal r.Runs[0].Point.Label "a:replay=0" "point label"
            let frame = Results.frame r
            Expect.containsAll frame.ColumnKeys [ "Run"; "Point"; "Stage"; "Metric"; "Value" ] "frame columns"
            Expect.isGreaterThan frame.RowCount 6 "rows for every metric"
            throwsWith<ArgumentException> (fun () -> Experiment.points "twice" [ [ "r", 1.0 ], start |> adaptFor 1.0; [ "r", 1.0 ], start |> adaptFor 1.0 ] |> ignore)
                [ "same parameters" ] "two points with the same parameters"

        testCase "evaluations run after each stage and are cached with the node" <| fun _ ->
            let ws = tempDir "evals"
            let e = chain 1e-3 |> Experiment.evaluateEach [ Experiment.heldOutPerplexity world.Finance ]
            let r = quietRun ws e
            for n in r.Runs[0].Nodes do
                Expect.isTrue (n.Evaluations["finance"]["perplexity"] > 1.0) $"{n.Name} evaluated"
            let again = quietRun ws e
            Expect.equal (again.Runs[0].Node("b").Evaluations["finance"]["perplexity"]) (r.Runs[0].Node("b").Evaluations["finance"]["perplexity"]) "same score from cache"

        testCase "two research processes on one workspace at once both succeed and the store holds every row" <| fun _ ->
            let ws = tempDir "two"
            let script = Path.Combine(ws, "chain.fsx")
            File.WriteAllText(script, """
open Research
let w = World.quick 120 5
let cfg = Research.Tests.Micro.config
let start = pretrain w.General cfg |> Stage.steps 6 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
let step name = adapt (w.Finance |> replay w.General 0.25) |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named name
let r = Experiment.create "two" start (step "a" >=> step "b") |> Experiment.seed (int64 (Script.arg fsi.CommandLineArgs "seed" 1)) |> Experiment.run
printfn "ok %d" r.Runs[0].RunId
""".Replace("Research.Tests.Micro.config", "Research.Models.ModelConfig(VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)"))
            let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
            let startRun seed =
                let psi = ProcessStartInfo("dotnet", $"\"{cli}\" run --workspace \"{ws}\" \"{script}\" --seed {seed}", RedirectStandardOutput = true, RedirectStandardError = true)
                Process.Start psi
            // seeds 1 and 1: the same stages, contended through the node locks; seed 2: stages of its own.
            let ps = [ startRun 1; startRun 1; startRun 2 ]
            let outs = ps |> List.map (fun p -> p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync())
            for p, (o, e) in List.zip ps outs do
                p.WaitForExit()
                Expect.equal p.ExitCode 0 $"exit code; output: {o.Result} {e.Result}"
            use store = new RunStore(ws)
            Expect.equal (store.Runs().Count) 3 "three runs"
            for r in store.Runs() do
                Expect.equal r.Status "done" $"run {r.Id} done"
                Expect.equal (store.Nodes(r.Id).Count) 3 $"run {r.Id} has its three nodes"
            let statuses = [ for r in store.Runs() do for n in store.Nodes(r.Id) -> n.Status ]
            Expect.equal (statuses |> List.filter ((=) "done") |> List.length) 6 "each distinct stage trained once (3 for seed 1, 3 for seed 2)"
            Expect.equal (statuses |> List.filter ((=) "cached") |> List.length) 3 "the duplicate seed-1 run reused them"
            Expect.equal (store.Count "metrics" > 0) true "metrics rows"

        testCase "distill: the student's loss falls and kd is reported; a teacher with another tokenizer is refused" <| fun _ ->
            let ws = tempDir "distill"
            let small name n = pretrain world.General micro |> Stage.steps n |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.named name
            let teacher = small "teacher" 30
            let student = distill teacher world.General |> Stage.steps 20 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let r = Experiment.create "distill" (small "student" 2) student |> Experiment.seed 3L |> quietRun ws
            let node = r.Runs[0].Node("distill")
            Expect.isTrue (node.Metrics.ContainsKey "kd" && node.Metrics.ContainsKey "ce") "kd and ce reported"
            let losses = MetricsLog.Read(Path.Combine(node.Directory, "metrics.jsonl")) |> Seq.filter (fun o -> string o["kind"] = "train") |> Seq.map (fun o -> (o["loss"]).GetValue<float>()) |> Array.ofSeq
            Expect.isLessThan losses[losses.Length - 1] losses[0] "distillation loss falls"
            // a teacher whose tokenizer (GPT-2) differs from the student's (bytes)
            let gptDir = Path.Combine(tempDir "gpt2-teacher", "model")
            use gpt = new Research.Models.CausalLM(Research.Models.ModelConfig(VocabSize = 50257, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 1), 1L)
            Research.Models.Checkpoint.Save(gptDir, gpt, Research.Data.Gpt2Tokenizer.Instance)
            let bad = Experiment.create "distill-bad" (small "student" 2) (distill (fromCheckpoint gptDir) world.General) |> Experiment.seed 3L
            throwsWith<InvalidDataException> (fun () -> quietRun ws bad |> ignore) [ "share a tokenizer"; "gpt2" ] "tokenizer mismatch"

        testCase "tune in a pipeline: an edited JSONL file re-runs tune, not its parent" <| fun _ ->
            let ws = tempDir "tune"
            let data = Path.Combine(ws, "sft.jsonl")
            let write n = File.WriteAllLines(data, [ for i in 1 .. n -> $"{{\"prompt\": \"Q{i}: \", \"completion\": \"A{i}\"}}" ])
            write 12
            let start = pretrain world.General micro |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let e () = Experiment.create "tune" start (tune data |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0) |> Experiment.seed 4L
            Expect.equal (statuses (quietRun ws (e ()))) [ "pretrain", "done"; "tune", "done" ] "first"
            Expect.equal (statuses (quietRun ws (e ()))) [ "pretrain", "cached"; "tune", "cached" ] "unchanged file"
            write 13
            Expect.equal (statuses (quietRun ws (e ()))) [ "pretrain", "cached"; "tune", "done" ] "edited file"

        testCase "pretrain >=> adapt >=> tune >=> align runs as one pipeline in the DSL" <| fun _ ->
            let ws = tempDir "findap"
            let sft = Path.Combine(ws, "sft.jsonl")
            let prefs = Path.Combine(ws, "prefs.jsonl")
            File.WriteAllLines(sft, [ for i in 1 .. 12 -> $"{{\"prompt\": \"Q{i}: \", \"completion\": \"A{i}\"}}" ])
            File.WriteAllLines(prefs, [ for i in 1 .. 12 -> $"{{\"prompt\": \"Q{i}: \", \"chosen\": \"A{i}\", \"rejected\": \"B{i} and more\"}}" ])
            let quick (s: Step) = s |> Stage.steps 4 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let start = pretrain world.General micro |> Stage.steps 4 |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
            let recipe =
                quick (adapt (world.Finance |> replay world.General 0.1) |> Stage.blockLength 32)
                >=> quick (tune sft |> Stage.blockLength 32)
                >=> quick (align prefs)
            let r = Experiment.create "findap-micro" start recipe |> Experiment.seed 6L |> quietRun ws
            Expect.equal (statuses r) [ "pretrain", "done"; "adapt", "done"; "tune", "done"; "align", "done" ] "every stage ran"
            Expect.isTrue (r.Runs[0].Node("align").Metrics.ContainsKey "rewards/accuracy") "align reports DPO diagnostics"

        testCase "gc removes only node directories no run references" <| fun _ ->
            let ws = tempDir "gc"
            quietRun ws (chain 1e-3) |> ignore
            let orphan = Path.Combine(ws, "nodes", "adapt-0000000000000000")
            Directory.CreateDirectory(Path.Combine(orphan, "final")) |> ignore
            File.WriteAllText(Path.Combine(orphan, "final", "model.safetensors"), "x")
            let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
            let run args =
                let psi = ProcessStartInfo("dotnet", $"\"{cli}\" {args} --workspace \"{ws}\"", RedirectStandardOutput = true)
                use p = Process.Start psi
                let o = p.StandardOutput.ReadToEnd()
                p.WaitForExit()
                p.ExitCode, o
            let code, dry = run "gc --dry-run"
            Expect.equal code 0 "dry run"
            Expect.stringContains dry "would remove" "lists the orphan"
            Expect.isTrue (Directory.Exists orphan) "dry run keeps it"
            let code, _ = run "gc"
            Expect.equal code 0 "gc"
            Expect.isFalse (Directory.Exists orphan) "orphan removed"
            Expect.equal (Directory.GetDirectories(Path.Combine(ws, "nodes")).Length) 3 "referenced nodes kept"
    ]
