module Research.Tests.NotebookTests

open System
open System.IO
open System.Diagnostics
open System.Text.Json.Nodes
open Expecto
open Research.Tests.TestUtil


let private run (workDir: string) (args: string) =
    let psi = ProcessStartInfo("dotnet", args, WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result + err.Result

/// Errors a notebook's executed cells reported: "error" outputs and stderr streams.
let cellErrors (executed: string) =
    let nb = JsonNode.Parse(File.ReadAllText executed)
    [ for cell in nb["cells"].AsArray() do
        match cell["outputs"] with
        | null -> ()
        | outputs ->
            for o in outputs.AsArray() do
                let kind = string o["output_type"]
                if kind = "error" || (kind = "stream" && string o["name"] = "stderr") then yield o.ToJsonString() ]

[<Tests>]
let tests =
    // A group: child dotnet-repl processes, one at a time; beside other lists.
    testSequencedGroup "Notebooks" <| testList "Notebooks" [
        for nb in Directory.GetFiles(Path.Combine(repoRoot, "notebooks"), "*.ipynb") |> Array.sort do
            testCase $"{Path.GetFileName nb} runs headless without a cell error" <| fun _ ->
                let code, out = run repoRoot "tool restore"
                Expect.equal code 0 $"dotnet tool restore: {out}"
                let executed = Path.Combine(Path.GetTempPath(), $"executed-{Guid.NewGuid():N}-{Path.GetFileName nb}")
                // Run from the notebook's own folder, as Polyglot Notebooks does, so relative #load paths hold.
                let code, out = run (Path.GetDirectoryName nb) $"dotnet-repl --run \"{nb}\" --exit-after-run --output-path \"{executed}\""
                Expect.isTrue (File.Exists executed) $"executed notebook written; output: {out}"
                Expect.equal (cellErrors executed) [] "no cell error"
                Expect.equal code 0 $"dotnet-repl exit code; output: {out}"
    ]
