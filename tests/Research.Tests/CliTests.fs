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
