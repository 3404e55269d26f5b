module Research.Tests.DocsTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open Research.Tests.TestUtil

let private dsl = lazy (File.ReadAllText(Path.Combine(TestUtil.repoRoot, "docs", "dsl.md")))

let private blocks (lang: string) (markdown: string) =
    [ for m in Regex.Matches(markdown, $"```{lang}\n(.*?)```", RegexOptions.Singleline) -> m.Groups[1].Value ]

let private normalize (code: string) =
    code.Split('\n') |> Array.map (fun l -> l.Trim()) |> Array.filter (fun l -> l <> "") |> String.concat "\n"

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Docs" [
        testCase "docs/dsl.md has F# and C# examples" <| fun _ ->
            Expect.isGreaterThanOrEqual (blocks "fsharp" dsl.Value).Length 2 "F# examples"
            Expect.equal (blocks "csharp" dsl.Value).Length 1 "one C# example"

        for i, code in blocks "fsharp" dsl.Value |> List.indexed do
            testCase $"docs/dsl.md F# example {i + 1} runs" <| fun _ ->
                let ws = tempDir $"docs-fs-{i}"
                let script = Path.Combine(ws, "example.fsx")
                File.WriteAllText(script, code)
                Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", ws)
                try
                    use out = new StringWriter()
                    use err = new StringWriter()
                    let exit = Research.Cli.ScriptHost.Run(script, [||], out, err)
                    Expect.equal exit 0 $"exit code; stdout: {out}; stderr: {err}"
                    if code.Contains "Experiment.run" then Expect.isTrue (File.Exists(Path.Combine(ws, "research.db"))) "recorded in the run store"
                    else Expect.isNotEmpty (out.ToString().Trim()) "a block that runs nothing prints what it built"
                finally
                    Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", null)

        testCase "docs/dsl.md C# example is the compiled one, and it runs" <| fun _ ->
            let source = File.ReadAllText(Path.Combine(TestUtil.repoRoot, "tests", "Research.Examples", "AdaptWithReplay.cs"))
            let region = (source.Split("// docs:begin")[1]).Split("// docs:end")[0]
            let docBlock = (blocks "csharp" dsl.Value).Head
            Expect.equal (normalize docBlock) (normalize region) "docs block = compiled example"
            let r = Research.Examples.AdaptWithReplay.Run(tempDir "docs-cs")
            Expect.equal r.Runs.Count 2 "two sweep points"
            for run in r.Runs do
                for n in run.Nodes do
                    Expect.isTrue (n.Evaluations["finance"]["perplexity"] > 1.0) $"{run.Point.Label} {n.Name} evaluated"
    ]
