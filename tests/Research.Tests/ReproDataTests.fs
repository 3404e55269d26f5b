module Research.Tests.ReproDataTests

open System.IO
open Expecto
open Research.Runs
open Research.Tests.TestUtil

/// Held-out perplexity of suite `suite` after stage `stage` per seed, read from the run store (not from the script's printout).
let private perplexity (ws: string) (stage: string) (suite: string) =
    use store = new RunStore(ws)
    [ for run in store.Runs() do
        let nodes = store.Nodes run.Id
        match nodes |> Seq.tryFind (fun n -> n.Name = stage) with
        | Some n ->
            for e in store.Evaluations run.Id do
                if e.NodeKey = n.Key && e.Suite = suite && e.Metric = "perplexity" then yield run.Seed, e.Value
        | None -> () ]
    |> Map.ofList

[<Tests>]
let tests =
    // A group: one reproduction script process at a time from this list; beside other lists.
    testSequencedGroup "ReproData" <| testList "ReproData" [
        testCase "domain upsampling (--tiny, 40 steps, 5 seeds): upsampling the last 10% and 20% lowers finance perplexity vs a constant mixture, paired by seed" <| fun _ ->
            let ws = tempDir "repro-upsampling"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-upsampling.fsx")) $"--tiny --seeds 5 --steps 40 --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = the domain claims held (output: {text})"
            Expect.stringContains text "claim (Blakeney et al., 2024)" "prints the claim"
            for share in [ 10; 20 ] do expectHeld text $"domain gain, last {share}%%: "
            expectFiles out [ "upsampling.png"; "upsampling.html"; "upsampling.tex"; "upsampling.md"; "upsampling-claims.md" ]
            let constant = perplexity ws "constant" "finance"
            for stage in [ "upsample-last-10"; "upsample-last-20" ] do
                pairedBelowZero $"{stage} - constant, finance perplexity" (perplexity ws stage "finance") constant

        testCase "DAPT then TAPT (--tiny, 5 seeds): lowest held-out task-text perplexity of the three variants, paired by seed" <| fun _ ->
            let ws = tempDir "repro-dapt-tapt"
            let out = Path.Combine(ws, "out")
            let code, text = runScript ws (Path.Combine(repoRoot, "scripts", "repro-dapt-tapt.fsx")) $"--tiny --seeds 5 --out \"{out}\""
            Expect.equal code 0 $"exit code 0 = DAPT+TAPT won on the end task (output: {text})"
            Expect.stringContains text "claim (Gururangan et al., 2020)" "prints the claim"
            for other in [ "dapt"; "tapt" ] do expectHeld text $"end task, dapt+tapt vs {other}: "
            expectFiles out [ "dapt-tapt.png"; "dapt-tapt.html"; "dapt-tapt.tex"; "dapt-tapt.md"; "dapt-tapt-claims.md" ]
            let both = perplexity ws "dapt+tapt" "tapt"
            for stage in [ "dapt"; "tapt" ] do
                pairedBelowZero $"dapt+tapt - {stage}, task perplexity" both (perplexity ws stage "tapt")
    ]
