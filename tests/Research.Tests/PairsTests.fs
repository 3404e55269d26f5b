/// Preference-data distillation end to end on a micro model: the policy's candidates judged by a reward, best vs worst
/// written as data and store rows, the stage cached on a re-run, and DPO after it trained on exactly those pairs.
module Research.Tests.PairsTests

open System.IO
open System.Text.Json.Nodes
open Expecto
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Runs
open Research.Stages
open Research.Stages.Reward
open Research.Tests.TestUtil

let private run ws e = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e

/// The mean character code of a completion, each capped at 255, / 255: dense, so random candidates are rarely tied.
let private meanCode = Research.Stages.Online.Reward.Of("pairs_mean_code", 1, fun _ completion _ -> if completion.Length = 0 then 0.0 else (completion |> Seq.averageBy (fun c -> float (min (int c) 255))) / 255.0)

let private lines (path: string) = [ for l in File.ReadAllLines path do if l <> "" then JsonNode.Parse l ]

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "PairsStage" [
        testCase "pairs from a reward function: chosen >= rejected, stored per prompt and candidate, cached; DPO reads them" <| fun _ ->
            let dir = tempDir "pairs"
            let parent = Path.Combine(dir, "parent")
            (use m = microModel 71L in Checkpoint.Save(parent, m, ByteTokenizer.Instance))
            let prompts = GrpoFixtures.writePrompts dir                  // 12 prompts
            Research.Stages.Online.Rewards.Register meanCode
            let pipeline =
                (preferencePairs prompts |> Pairs.judge [ "pairs_mean_code", 1.0 ] |> Pairs.candidates 4 |> Pairs.maxNewTokens 6 |> Stage.named "pairs")
                >=> (alignOnPairs |> Stage.steps 4 |> Stage.batch 2 |> Stage.logEvery 1 |> Align.generations 0 8 |> Stage.named "dpo")
            let e = Experiment.create "pairs" (fromCheckpoint parent) pipeline |> Experiment.seed 3L
            let ws = Path.Combine(dir, "ws")
            let r = run ws e
            let node = r.Runs[0].Node "pairs"
            Expect.equal node.Status "done" "ran"
            let pairs = lines (Path.Combine(node.Directory, AlignExecutor.ParentPairsFile))
            let n = pairs.Length
            printfn "pairs: %d of 12 prompts kept; mean chosen %.3f, rejected %.3f, candidates %.3f" n node.Metrics["mean_chosen_score"] node.Metrics["mean_rejected_score"] node.Metrics["mean_candidate_score"]
            Expect.isGreaterThan n 0 "some prompts gave a pair"
            Expect.equal (float n) node.Metrics["pairs"] "metric = lines"
            for p in pairs do
                let c, rj = p["chosen_score"].GetValue<float>(), p["rejected_score"].GetValue<float>()
                Expect.isGreaterThan c rj "chosen scores above rejected (ties are dropped)"
                let scores = [ for s in p["scores"].AsArray() -> s.GetValue<float>() ]
                Expect.equal scores.Length 4 "every candidate's score"
                Expect.equal c (List.max scores) "chosen = the best"
                Expect.equal rj (List.min scores) "rejected = the worst"
                Expect.floatClose Accuracy.high (meanCode.Score("", p["chosen"].GetValue<string>(), null)) c "the judge's score of the chosen text"
            Expect.equal (lines (Path.Combine(node.Directory, PairsExecutor.CandidatesFile))).Length 12 "every prompt in candidates.jsonl"
            // The run store holds a row per prompt and per candidate: what a figure of how pairs were chosen reads.
            use store = new RunStore(ws)
            let rows = store.Metrics node.Key
            let perPrompt = rows |> Seq.filter (fun m -> m.Kind = "pairs" && m.Name = "kept") |> Seq.toList
            Expect.equal perPrompt.Length 12 "a 'pairs' row per prompt"
            Expect.equal (perPrompt |> List.sumBy (fun m -> m.Value)) (float n) "kept rows = pairs"
            Expect.equal (rows |> Seq.filter (fun m -> m.Kind = "candidates" && m.Name = "score") |> Seq.length) 48 "a 'candidates' row per candidate"
            // The figure of how pairs were chosen, from those rows.
            let traces =
                use doc = System.Text.Json.JsonDocument.Parse(Plotly.NET.GenericChart.toFigureJson (Figures.pairSelection "pairs" rows))
                [ for t in doc.RootElement.GetProperty("data").EnumerateArray() -> t.GetProperty("name").GetString(), t.GetProperty("y").GetArrayLength() ]
            Expect.equal traces [ "candidate", 48 - 2 * n; "chosen", n; "rejected", n ] "candidates, chosen and rejected points"
            // DPO after it trained on those pairs.
            let dpo = r.Runs[0].Node "dpo"
            Expect.equal dpo.Status "done" "DPO trained"
            let report = JsonNode.Parse(File.ReadAllText(Path.Combine(dpo.Directory, AlignExecutor.ReportFile)))
            Expect.equal (report["records"].GetValue<int>()) n "align read every pair"
            // Re-run: both cached.
            let again = run ws e
            Expect.equal [ for x in again.Runs[0].Nodes -> x.Status ] [ "cached"; "cached"; "cached" ] "cached"
            // Another N is another key.
            let more = Experiment.create "pairs" (fromCheckpoint parent) (preferencePairs prompts |> Pairs.judge [ "pairs_mean_code", 1.0 ] |> Pairs.candidates 3 |> Pairs.maxNewTokens 6 |> Stage.named "pairs")
            Expect.notEqual (Executor.Key((more.Points[0].Leaves[0]), 3L)) node.Key "N is in the key"
            let hotter = Experiment.create "pairs" (fromCheckpoint parent) (preferencePairs prompts |> Pairs.judge [ "pairs_mean_code", 1.0 ] |> Pairs.candidates 4 |> Pairs.maxNewTokens 6 |> Pairs.temperature 0.7 |> Stage.named "pairs")
            Expect.notEqual (Executor.Key((hotter.Points[0].Leaves[0]), 3L)) node.Key "the sampling settings are in the key"
            let same = Experiment.create "pairs" (fromCheckpoint parent) (preferencePairs prompts |> Pairs.judge [ "pairs_mean_code", 1.0 ] |> Pairs.candidates 4 |> Pairs.maxNewTokens 6 |> Stage.named "pairs")
            Expect.equal (Executor.Key((same.Points[0].Leaves[0]), 3L)) node.Key "the same stage, the same key"
            let judged = (same.Points[0].Leaves[0]).Config :?> PairsOptions
            Expect.stringContains (judged.FilesFingerprint()) "pairs_mean_code@1*1" "the judge's name, version and weight are in the key"

        testCase "a reward model as the judge (the stage's second parent); no judge is an error saying what to give" <| fun _ ->
            let dir = tempDir "pairs-rm"
            let parent = Path.Combine(dir, "parent")
            (use m = microModel 72L in Checkpoint.Save(parent, m, ByteTokenizer.Instance))
            let prompts = GrpoFixtures.writePrompts dir
            let prefs = Path.Combine(dir, "prefs.jsonl")
            File.WriteAllLines(prefs, [ for i in 0 .. 15 -> $"{{\"prompt\": \"say a {i}:\", \"chosen\": \"aaaa\", \"rejected\": \"zzzz\"}}" ])
            let start = fromCheckpoint parent
            let rm = start |> (rewardModel prefs |> Stage.steps 6 |> Stage.batch 4 |> Stage.logEvery 1 |> Stage.lr 3e-3 |> Stage.named "rm")
            let pairs = start |> (preferencePairs prompts |> Pairs.judgeModel rm |> Pairs.candidates 3 |> Pairs.maxNewTokens 4 |> Stage.named "pairs")
            let r = run (Path.Combine(dir, "ws")) (Experiment.create "pairs-rm" start (fun _ -> pairs) |> Experiment.seed 5L)
            let node = r.Runs[0].Node "pairs"
            let report = JsonNode.Parse(File.ReadAllText(Path.Combine(node.Directory, PairsExecutor.ReportFile)))
            Expect.stringStarts (report["judge"].[0].GetValue<string>()) "judge_model@" "the reward model judged"
            for p in lines (Path.Combine(node.Directory, AlignExecutor.ParentPairsFile)) do
                Expect.isGreaterThan (p["chosen_score"].GetValue<float>()) (p["rejected_score"].GetValue<float>()) "chosen above rejected"
            let bare = Experiment.create "pairs-none" start (preferencePairs prompts |> Stage.named "pairs") |> Experiment.seed 5L
            throwsWith<System.ArgumentException> (fun () -> run (Path.Combine(dir, "ws2")) bare |> ignore) [ "pairs: no judge"; "Pairs.judgeModel"; "Pairs.judge" ] "no judge"
    ]
