module Research.Tests.PipelineTests

open System
open System.IO
open System.Diagnostics
open Expecto
open Research.Runs
open Research.Tests.TestUtil

let private cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
let private tinyArgs = "--pretrain-steps 20 --adapt-steps 40 --tune-steps 10 --align-steps 5 --checkpoint-every 20 --general-docs 240 --seed 3 --threads 1"

/// The quick start exits 3 when one of its expected directions does not hold, which a 20-step pretrain cannot promise;
/// these tests are about reproducibility and resumption, so both endings count as a completed run.
let private completed code = code = 0 || code = 3

let private start (workspace: string) =
    let psi = ProcessStartInfo("dotnet", $"\"{cli}\" quickstart --workspace \"{workspace}\" {tinyArgs}")
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    Process.Start psi

let private runCli (workspace: string) (args: string) =
    let psi = ProcessStartInfo("dotnet", $"\"{cli}\" {args} --workspace \"{workspace}\"")
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    p.StandardError.ReadToEndAsync() |> ignore
    p.WaitForExit()
    p.ExitCode, out.Result

let private runToEnd (workspace: string) =
    use p = start workspace
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result + err.Result

/// Every metrics.jsonl of a quick-start workspace, keyed by stage directory, time fields removed.
let private metrics (workspace: string) =
    Directory.GetFiles(Path.Combine(workspace, "nodes"), "metrics.jsonl", SearchOption.AllDirectories)
    |> Array.sort
    |> Array.map (fun f ->
        Path.GetFileName(Path.GetDirectoryName f),
        metricsWithoutTime f)
    |> List.ofArray

/// One uninterrupted tiny quick start, shared: the first test checks it, the second compares a killed run with it.
let private uninterrupted = lazy (let a = tempDir "qs-a" in a, runToEnd a)

[<Tests>]
let tests =
    // A group: child quickstart processes sharing one reference run; beside other lists (the kill waits for a checkpoint, not a time).
    testSequencedGroup "Pipeline" <| testList "Pipeline" [
        testCase "quick start: same seed in two workspaces gives identical metrics; a rerun reuses every stage" <| fun _ ->
            // The second workspace runs beside the first (one thread each, two cores): same results, half the wall time.
            let b = tempDir "qs-b"
            let second = Threading.Tasks.Task.Run(fun () -> runToEnd b)
            let a, (codeA, outA) = uninterrupted.Value
            Expect.isTrue (completed codeA) $"quickstart exit code {codeA} (output: {outA})"
            Expect.stringContains outA "capability" "prints the capability report"
            Expect.stringContains outA "tune raises instruction following: " "prints the checks"
            let codeB, _ = second.Result
            Expect.isTrue (completed codeB) "second workspace"
            Expect.equal (metrics a) (metrics b) "identical metrics, time fields aside"
            Expect.equal (metrics a |> List.length) 5 "pretrain + two adapt stages + tune + align"
            let final = Directory.GetDirectories(Path.Combine(a, "nodes"), "final", SearchOption.AllDirectories)
            Expect.equal final.Length 5 "five final checkpoints"
            for d in final do
                for f in [ "model.safetensors"; "config.json"; "tokenizer_config.json" ] do
                    Expect.isTrue (File.Exists(Path.Combine(d, f))) $"{d}/{f}"
            let codeC, outC = runToEnd a
            Expect.isTrue (completed codeC) "rerun"
            Expect.equal (outC.Split("): cached").Length - 1) 5 $"all five stages cached: {outC}"
            let codeJ, json = runCli a "runs --json"
            Expect.equal codeJ 0 "runs --json"
            let runs = (System.Text.Json.Nodes.JsonNode.Parse(json)["runs"]).AsArray()
            Expect.equal runs.Count 2 "two runs recorded"
            let statuses (r: System.Text.Json.Nodes.JsonNode) = [ for n in r["nodes"].AsArray() -> string n["status"] ]
            Expect.equal (statuses runs[0]) [ "done"; "done"; "done"; "done"; "done" ] "first run trained"
            Expect.equal (statuses runs[1]) [ "cached"; "cached"; "cached"; "cached"; "cached" ] "second run reused every stage"

        testCase "SIGKILL during adapt, then the same command: resumes and ends with the uninterrupted metrics" <| fun _ ->
            let reference, (code, _) = uninterrupted.Value
            let killed = tempDir "qs-kill"
            Expect.isTrue (completed code) "reference run"
            use p = start killed
            p.BeginOutputReadLine()
            p.BeginErrorReadLine()
            let stages = Path.Combine(killed, "nodes")
            let adaptCheckpoint () =
                Directory.Exists stages
                && Directory.GetDirectories(stages, "adapt-*")
                   |> Array.exists (fun d -> File.Exists(Path.Combine(d, "checkpoints", "last", "trainer_state.json")))
            let clock = Stopwatch.StartNew()
            while not (adaptCheckpoint ()) && not p.HasExited && clock.Elapsed < TimeSpan.FromMinutes 3.0 do
                Threading.Thread.Sleep 20
            Expect.isFalse p.HasExited "killed while still running"
            p.Kill(entireProcessTree = true) // SIGKILL
            p.WaitForExit()
            let code2, out2 = runToEnd killed
            Expect.isTrue (completed code2) $"resumed run: {out2}"
            Expect.stringContains out2 "adapt: resuming from the last checkpoint, step" "says it resumes"
            Expect.equal (metrics killed) (metrics reference) "same metrics as uninterrupted"
    ]
