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
    // Sequenced: torch's process-wide RNG, which Trainer.Run seeds: runs whose metrics are compared must not interleave; and the two cores, which each reproduction fills.
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

        testCase "merge (--tiny): task arithmetic and TIES beat each single fine-tune on both tasks, DARE 0.9 keeps >= 80%; lambda chosen on validation; figure and table written" <| fun _ ->
            let ws = tempDir "repro-merge"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-merge.fsx")) $"--tiny --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = every claimed direction held (output: {text})"
            for prefix in [ "task arithmetic (chosen lambda)"; "TIES (chosen lambda)"; "DARE at drop 0.9" ] do expectHeld text prefix
            expectFiles out [ "merge-coefficient-sweep.png"; "merge-coefficient-sweep.svg"; "merge-coefficient-sweep.pdf"; "merge-coefficient-sweep.html"
                              "merge-tasks.tex"; "merge-tasks.md" ]
            // Columns: model, lambda, validation accuracy, held-out answer accuracy.
            let rows = tableRows (Path.Combine(out, "merge-tasks.md"))
            let row name = rows |> List.find (fun r -> r[0] = name)
            let single name = number (row name).[3]
            let best = max (single "upper-case only") (single "digit+1 only")
            Expect.isGreaterThan (single "upper-case only") (single "base") "the upper-case fine-tune learned its task"
            Expect.isGreaterThan (single "digit+1 only") (single "base") "the digit+1 fine-tune learned its task"
            let chosen name =
                let sweep = rows |> List.filter (fun r -> r[0] = name)
                Expect.isGreaterThanOrEqual sweep.Length 3 $"{name}: a sweep over lambda"
                let r = row $"{name}, chosen lambda"
                let atChosen = sweep |> List.find (fun s -> s[1] = r[1])
                Expect.equal (number atChosen[2]) (sweep |> List.map (fun s -> number s[2]) |> List.max) $"{name}: the chosen lambda {r[1]} has the best validation accuracy"
                Expect.equal r[3] atChosen[3] $"{name}: the chosen row reports the held-out accuracy at that lambda"
                number r[3]
            let ta, ties, dare = chosen "task arithmetic", chosen "TIES (density 0.5)", chosen "DARE (drop 0.9)"
            Expect.isGreaterThan ta best $"task arithmetic {ta} > best single fine-tune {best} (from the table)"
            Expect.isGreaterThan ties best $"TIES {ties} > best single fine-tune {best} (from the table)"
            Expect.isGreaterThanOrEqual dare (0.8 * ta) $"DARE at drop 0.9 {dare} keeps at least 80 percent of task arithmetic {ta} (from the table)"
    ]
