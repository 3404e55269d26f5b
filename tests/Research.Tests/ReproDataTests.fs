module Research.Tests.ReproDataTests

open System.IO
open Expecto
open Research.Runs
open Research.Tests.TestUtil

/// Held-out perplexity of suite `suite` after stage `stage`, read from the run store (not from the script's printout).
let private perplexity (ws: string) (stage: string) (suite: string) =
    use store = new RunStore(ws)
    let evals =
        [ for run in store.Runs() do
            let nodes = store.Nodes run.Id
            match nodes |> Seq.tryFind (fun n -> n.Name = stage) with
            | Some n ->
                for e in store.Evaluations run.Id do
                    if e.NodeKey = n.Key && e.Suite = suite && e.Metric = "perplexity" then yield e.Value
            | None -> () ]
    match evals with
    | v :: _ -> v
    | [] -> failwith $"no {suite} perplexity for stage '{stage}' in {ws}"

[<Tests>]
let tests =
    // Sequenced: torch's process-wide RNG, which Trainer.Run seeds: runs whose metrics are compared must not interleave; and the two cores, which each reproduction fills.
    testSequenced <| testList "ReproData" [
        testCase "domain upsampling (--tiny): upsampling the last 10% and 20% lowers finance perplexity vs a constant mixture" <| fun _ ->
            let ws = tempDir "repro-upsampling"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-upsampling.fsx")) $"--tiny --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = the domain claim held (output: {text})"
            Expect.stringContains text "claim (Blakeney et al., 2024)" "prints the claim"
            expectHeld text "domain: "
            expectFiles out [ "upsampling.png"; "upsampling.html"; "upsampling.tex"; "upsampling.md" ]
            let constant = perplexity ws "constant" "finance"
            for stage in [ "upsample-last-10"; "upsample-last-20" ] do
                let up = perplexity ws stage "finance"
                Expect.isLessThan up constant $"{stage}: finance perplexity below the constant mixture's ({up} < {constant})"

        testCase "DAPT then TAPT (--tiny): lowest held-out task-text perplexity of the three variants" <| fun _ ->
            let ws = tempDir "repro-dapt-tapt"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-dapt-tapt.fsx")) $"--tiny --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = DAPT+TAPT won on the end task (output: {text})"
            Expect.stringContains text "claim (Gururangan et al., 2020)" "prints the claim"
            expectHeld text "end task: "
            expectFiles out [ "dapt-tapt.png"; "dapt-tapt.html"; "dapt-tapt.tex"; "dapt-tapt.md" ]
            let both = perplexity ws "dapt+tapt" "tapt"
            for stage in [ "dapt"; "tapt" ] do
                let one = perplexity ws stage "tapt"
                Expect.isLessThan both one $"dapt+tapt below {stage} on task text ({both} < {one})"
    ]
