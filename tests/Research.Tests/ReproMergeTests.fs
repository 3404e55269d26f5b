module Research.Tests.ReproMergeTests

open System
open System.Globalization
open System.IO
open Expecto
open Research.Tests.TestUtil

/// The body rows of the Markdown table a script wrote (name.md): cells of each line after the header and the rule.
let private tableRows (path: string) =
    File.ReadAllLines path
    |> Array.filter (fun l -> l.StartsWith "|")
    |> Array.skip 2
    |> Array.map (fun l -> l.Trim().Trim('|').Split('|') |> Array.map (fun c -> c.Trim()))
    |> Array.toList

let private number (s: string) = Double.Parse(s, CultureInfo.InvariantCulture)

[<Tests>]
let tests =
    testSequenced <| testList "ReproMerge" [
        testCase "distill (--tiny): the distilled student has a lower held-out loss than on hard labels; figure and table written" <| fun _ ->
            let ws = tempDir "repro-distill"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-distill.fsx")) $"--tiny --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = the claimed direction held (output: {text})"
            Expect.stringContains text "HELD" "prints that it held"
            expectFiles out [ "distill-heldout-loss.png"; "distill-heldout-loss.svg"; "distill-heldout-loss.pdf"; "distill-heldout-loss.html"
                              "distill.tex"; "distill.md" ]
            let rows = tableRows (Path.Combine(out, "distill.md"))
            let loss name = rows |> List.find (fun r -> r[0] = name) |> fun r -> number r[1]
            let hard, soft = loss "student, hard labels", loss "student, distilled (GJSD)"
            Expect.isLessThan soft hard $"distilled {soft} < hard labels {hard} (from the table)"
            Expect.isLessThan (loss "teacher") hard "the teacher is better than the hard-label student"
    ]
