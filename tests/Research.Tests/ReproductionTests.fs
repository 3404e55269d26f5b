module Research.Tests.ReproductionTests

open System
open System.IO
open Expecto
open Research.Runs
open Research.Tests.TestUtil


[<Tests>]
let tests =
    // A group: one reproduction script process at a time from this list; beside other lists.
    testSequencedGroup "Reproductions" <| testList "Reproductions" [
        testCase "replay sweep (--tiny, 30 adapt steps, 5 seeds): more replay forgets less, paired by seed; figures and tables written" <| fun _ ->
            let ws = tempDir "repro-replay"
            let out = Path.Combine(ws, "out")
            let script = Path.Combine(repoRoot, "scripts", "repro-replay-sweep.fsx")
            let code, text = runScript ws script $"--tiny --seeds 5 --adapt-steps 30 --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = the forgetting direction held (output: {text})"
            Expect.stringContains text "more replay -> less forgetting" "prints the claimed direction"
            Expect.stringContains text "over 5 seeds" "judged over five seeds"
            expectHeld text "more replay, less forgetting: "
            Expect.isTrue (text.Contains "small cost in domain gain: ") "the second claim is judged too, held or not"
            for f in [ "replay-forgetting-vs-gain.png"; "replay-forgetting-vs-gain.svg"; "replay-forgetting-vs-gain.pdf"; "replay-forgetting-vs-gain.html"
                       "replay-sweep.png"; "replay-sweep.tex"; "replay-sweep.md"; "replay-claims.md"; "replay-claims.tex" ] do
                Expect.isTrue (File.Exists(Path.Combine(out, f))) f
            // The direction again, from the run store rather than the script's own arithmetic: paired by seed.
            use store = new RunStore(ws)
            let generalRise (point: string) =
                [ for run in store.Runs() |> Seq.filter (fun r -> r.Point = point) ->
                    let nodes = store.Nodes run.Id
                    let general (name: string) =
                        let key = (nodes |> Seq.find (fun n -> n.Name = name)).Key
                        (store.Evaluations run.Id |> Seq.find (fun e -> e.NodeKey = key && e.Suite = "general" && e.Metric = "perplexity")).Value
                    run.Seed, general "adapt" - general "pretrain" ] |> Map.ofList
            let none, most = generalRise "replay=0", generalRise "replay=0.5"
            pairedBelowZero "forgetting(0.5) - forgetting(0)" most none
            Expect.stringContains (File.ReadAllText(Path.Combine(out, "replay-sweep.tex"))) @"\toprule" "booktabs table"
    ]
