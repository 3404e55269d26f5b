module Research.Tests.ReproductionTests

open System
open System.IO
open Expecto
open Research.Runs
open Research.Tests.TestUtil


[<Tests>]
let tests =
    // Sequenced: torch's process-wide RNG, which Trainer.Run seeds: runs whose metrics are compared must not interleave; and the two cores, which each reproduction fills.
    testSequenced <| testList "Reproductions" [
        testCase "replay sweep (--tiny): more replay forgets less; figure and table written" <| fun _ ->
            let ws = tempDir "repro-replay"
            let out = Path.Combine(ws, "out")
            let script = Path.Combine(repoRoot, "scripts", "repro-replay-sweep.fsx")
            let code, text = runScript ws script $"--tiny --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = the forgetting direction held (output: {text})"
            Expect.stringContains text "more replay -> less forgetting" "prints the claimed direction"
            expectHeld text "forgetting: "
            for f in [ "replay-forgetting-vs-gain.png"; "replay-forgetting-vs-gain.svg"; "replay-forgetting-vs-gain.pdf"; "replay-forgetting-vs-gain.html"
                       "replay-sweep.png"; "replay-sweep.tex"; "replay-sweep.md" ] do
                Expect.isTrue (File.Exists(Path.Combine(out, f))) f
            // The direction again, from the run store rather than the script's own arithmetic.
            use store = new RunStore(ws)
            let generalRise (point: string) =
                let run = store.Runs() |> Seq.find (fun r -> r.Point = point)
                let nodes = store.Nodes run.Id
                let general (name: string) =
                    let key = (nodes |> Seq.find (fun n -> n.Name = name)).Key
                    (store.Evaluations run.Id |> Seq.find (fun e -> e.NodeKey = key && e.Suite = "general" && e.Metric = "perplexity")).Value
                general "adapt" - general "pretrain"
            let none, most = generalRise "replay=0", generalRise "replay=0.5"
            Expect.isLessThan most none $"general perplexity rises less (or falls more) with replay 0.5 than without ({most} < {none})"
            Expect.stringContains (File.ReadAllText(Path.Combine(out, "replay-sweep.tex"))) @"\toprule" "booktabs table"
    ]
