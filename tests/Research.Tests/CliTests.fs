module Research.Tests.CliTests

open System
open System.IO
open Expecto
open Research.Cli
open Research.Tests.TestUtil

/// A temp folder holding one script; deleted afterwards.
let private withScript (name: string) (text: string) (f: string -> unit) =
    let dir = Path.Combine(Path.GetTempPath(), "research-cli-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    try
        let path = Path.Combine(dir, name)
        File.WriteAllText(path, text)
        f path
    finally
        try Directory.Delete(dir, true) with _ -> ()

/// Runs a script through ScriptHost: exit code, stdout, stderr.
let private run (path: string) (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = ScriptHost.Run(path, List.toArray args, out, err)
    code, out.ToString(), err.ToString()


// FCS sessions share compiler state and the process console: one at a time.
[<Tests>]
let tests =
    // Sequenced: child research processes, whose start-up time the tests bound.
    testSequenced <| testList "Cli" [
        testList "ScriptHost" [
            test "a script computes with TorchSharp and Research types, exit 0" {
                let script =
                    "open TorchSharp\n" +
                    "Research.Runtime.init ()\n" +
                    "let t = torch.arange(1L, 5L).to_type(torch.float32)\n" +
                    "let s = t.sum().item<float32>()\n" +
                    "let p = System.IO.Path.Combine(__SOURCE_DIRECTORY__, \"out.txt\")\n" +
                    "Research.Runs.AtomicFile.WriteAllText(p, sprintf \"%g\" s)\n" +
                    "printfn \"sum=%s\" (System.IO.File.ReadAllText p)\n" +
                    "#if RESEARCH_HOST\nprintfn \"hosted\"\n#endif\n" +
                    "eprintfn \"to stderr\"\n"
                withScript "ok.fsx" script (fun path ->
                    let code, out, err = run path []
                    Expect.equal code 0 $"exit code (stderr: {err})"
                    Expect.stringContains out "sum=10" "the computed value"
                    Expect.stringContains out "hosted" "RESEARCH_HOST is defined"
                    Expect.isFalse (out.Contains "val ") "fsi's binding echo is not script output"
                    Expect.stringContains err "to stderr" "the script's stderr")
            }

            test "System.Collections.Generic and ResizeArray resolve as under dotnet fsi (overloads included)" {
                let script =
                    "open System.Collections.Generic\n" +
                    "let d = Dictionary<string, int>()\nd[\"a\"] <- 1\nd.Add(\"b\", 2)\n" +
                    "let h = HashSet<int>([ 1; 2; 2; 3 ])\n" +
                    "let r = ResizeArray<float>([ 0.5 ])\nr.Add 1.5\n" +
                    "let ok, v = d.TryGetValue \"b\"\n" +
                    "let q = Queue<string>(seq { \"x\" })\n" +
                    "printfn \"%d %d %d %b %d %s\" d.Count h.Count r.Count ok v (q.Peek())\n"
                withScript "collections.fsx" script (fun path ->
                    let code, out, err = run path []
                    Expect.equal code 0 $"exit code (stderr: {err})"
                    Expect.stringContains out "2 3 2 true 2 x" "Dictionary, HashSet(list), ResizeArray(list), TryGetValue, Queue(seq)")
            }

            test "fsi.CommandLineArgs is [script; args...]" {
                withScript "args.fsx" "printfn \"%s\" (String.concat \"|\" fsi.CommandLineArgs)\n" (fun path ->
                    let code, out, err = run path [ "a"; "b c"; "--x" ]
                    Expect.equal code 0 $"exit code (stderr: {err})"
                    Expect.stringContains out $"{path}|a|b c|--x" "script path then its args")
            }

            test "a compile error exits 1 naming file, line and column" {
                withScript "bad.fsx" "let a = 1\nlet b : int = \"oops\"\nprintfn \"not reached\"\n" (fun path ->
                    let code, out, err = run path []
                    Expect.equal code 1 "exit code"
                    Expect.stringContains err $"{path}(2," "file and line"
                    Expect.stringContains err "error FS0001" "the diagnostic"
                    Expect.isFalse (out.Contains "not reached") "nothing ran")
            }

            test "a runtime exception exits 1 with its message and script line" {
                let script = "let f () = failwith \"boom in script\"\nprintfn \"before\"\nf ()\n"
                withScript "throw.fsx" script (fun path ->
                    let code, out, err = run path []
                    Expect.equal code 1 "exit code"
                    Expect.stringContains out "before" "ran up to the exception"
                    Expect.stringContains err "boom in script" "the message"
                    Expect.stringContains err "throw.fsx:line 3" "the script position")
            }

            test "a missing script exits 2" {
                let path = Path.Combine(Path.GetTempPath(), "research-missing-" + Guid.NewGuid().ToString("N") + ".fsx")
                let code, _, err = run path []
                Expect.equal code 2 "exit code"
                Expect.stringContains err "not found" "a clear message"
            }

            test "scripts/hello.fsx runs hosted (its #load of research.fsx skips the #r lines)" {
                let hello = Path.Combine(repoRoot, "scripts", "hello.fsx")
                let code, out, err = run hello []
                Expect.equal code 0 $"exit code (stderr: {err})"
                Expect.stringContains out "torch ok: 55" "hello's output"
            }
        ]

        testList "WarmHost" [
            // The script of both tests: a two-stage experiment of the micro model in its own workspace.
            let experimentScript (ws: string) =
                "open Research\n" +
                "let w = World.quick 120 5\n" +
                "let cfg = Research.Models.ModelConfig(VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)\n" +
                "let inline quiet s = s |> Stage.blockLength 32 |> Stage.logEvery 2 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0\n" +
                "let start = pretrain w.General cfg |> Stage.steps 6 |> quiet\n" +
                "let r = Experiment.create \"warm\" start (adapt (w.Finance |> replay w.General 0.25) |> Stage.steps 4 |> quiet |> Stage.named \"a\") |> Experiment.seed 1L |> Experiment.runIn @\"" + ws + "\"\n" +
                "for n in r.Runs[0].Nodes do printfn \"%s %s\" n.Name n.Status\n"

            test "one warm session re-runs an unchanged, cached experiment in under 5 seconds" {
                withScript "warm.fsx" "" (fun path ->
                    let ws = Path.Combine(Path.GetDirectoryName path, "ws")
                    File.WriteAllText(path, experimentScript ws)
                    use session = new ScriptHost.Session()
                    let runOnce () =
                        use out = new StringWriter()
                        use err = new StringWriter()
                        let clock = Diagnostics.Stopwatch.StartNew()
                        let code = session.Run(path, [], out, err)
                        code, out.ToString(), err.ToString(), clock.Elapsed.TotalSeconds
                    let code, out, err, first = runOnce ()
                    Expect.equal code 0 $"first run (stderr: {err})"
                    Expect.stringContains out "a done" "the first run trains"
                    let code, out, err, again = runOnce ()
                    Expect.equal code 0 $"re-run (stderr: {err})"
                    Expect.stringContains out "pretrain cached" "pretrain reused"
                    Expect.stringContains out "a cached" "adapt reused"
                    printfn $"warm host: first run {first:F2} s, cached re-run {again:F2} s"
                    Expect.isLessThan again 5.0 $"a cached re-run in one session takes {again:F2} s (first: {first:F2} s)")
            }

            test "research run --watch runs again when the script is saved" {
                withScript "watch.fsx" "" (fun path ->
                    let ws = Path.Combine(Path.GetDirectoryName path, "ws")
                    File.WriteAllText(path, experimentScript ws)
                    let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
                    let psi = Diagnostics.ProcessStartInfo("dotnet", $"\"{cli}\" run --watch \"{path}\"", RedirectStandardOutput = true, RedirectStandardError = true)
                    use p = Diagnostics.Process.Start psi
                    let out = Text.StringBuilder()
                    let err = Collections.Concurrent.ConcurrentQueue<string>()
                    p.OutputDataReceived.Add(fun e -> if not (isNull e.Data) then lock out (fun () -> out.AppendLine e.Data |> ignore))
                    p.ErrorDataReceived.Add(fun e -> if not (isNull e.Data) then err.Enqueue e.Data)
                    p.BeginOutputReadLine()
                    p.BeginErrorReadLine()
                    let runs () = err |> Seq.filter (fun l -> l.StartsWith "research run --watch: exit") |> List.ofSeq
                    let waitFor n =
                        let clock = Diagnostics.Stopwatch.StartNew()
                        while (runs ()).Length < n && clock.Elapsed.TotalSeconds < 240.0 && not p.HasExited do Threading.Thread.Sleep 100
                    try
                        waitFor 1
                        Expect.equal (runs ()).Length 1 $"the first run ended (stderr: {String.Join('\n', err)})"
                        File.AppendAllText(path, "printfn \"saved again\"\n")
                        waitFor 2
                        let all = runs ()
                        Expect.equal all.Length 2 $"a second run after the save (stderr: {String.Join('\n', err)})"
                        Expect.stringContains all[1] "exit 0" "the second run succeeded"
                        let text = lock out (fun () -> out.ToString())
                        Expect.stringContains text "saved again" "the edited script ran"
                        Expect.stringContains text "a cached" "its stages were reused"
                        printfn $"{all[1]}"
                    finally
                        if not p.HasExited then p.Kill true
                        p.WaitForExit())
            }
        ]

        testList "RunCommand" [
            test "--workspace before the script sets RESEARCH_WORKSPACE; later args go to the script" {
                withScript "ws.fsx" "printfn \"ws=%s args=%A\" (System.Environment.GetEnvironmentVariable \"RESEARCH_WORKSPACE\") fsi.CommandLineArgs.[1..]\n" (fun path ->
                    let ws = Path.Combine(Path.GetDirectoryName(path) |> string, "ws")
                    let before = Environment.GetEnvironmentVariable "RESEARCH_WORKSPACE"
                    let oldOut = Console.Out
                    use out = new StringWriter()
                    Console.SetOut out
                    let code =
                        try Commands.RunCommand.Execute [| "run"; "--workspace"; ws; path; "--workspace"; "x" |]
                        finally
                            Console.SetOut oldOut
                            Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", before)
                    Expect.equal code 0 "exit code"
                    let text = out.ToString()
                    Expect.stringContains text $"ws={ws}" "workspace from the option"
                    Expect.stringContains text "[|\"--workspace\"; \"x\"|]" "args after the script are the script's")
            }

            test "a missing script path is a usage error" {
                let oldErr = Console.Error
                use err = new StringWriter()
                Console.SetError err
                let code = try Commands.RunCommand.Execute [| "run"; "--workspace"; "/tmp" |] finally Console.SetError oldErr
                Expect.equal code 2 "exit code"
                Expect.stringContains (err.ToString()) "usage" "usage printed"
            }
        ]
    ]
