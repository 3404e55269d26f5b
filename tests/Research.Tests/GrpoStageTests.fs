/// The grpo stage end to end on a micro model: a dense verifiable reward rises, and the same seed gives the same run.
module Research.Tests.GrpoStageTests

open System
open System.IO
open Expecto
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Runs
open Research.Stages.Online
open Research.Tests.TestUtil
open TorchSharp


/// The mean character code of a completion, each capped at 255, / 255 (a byte that is not UTF-8 decodes to U+FFFD, so
/// counts 1): dense and continuous, so two random samples are almost never tied.
let private meanCode = Reward.Of("mean_code", 2, fun _ completion _ -> if completion.Length = 0 then 0.0 else (completion |> Seq.averageBy (fun c -> float (min (int c) 255))) / 255.0)

let private setup () =
    let dir = tempDir "grpo"
    let parent = Path.Combine(dir, "parent")
    (use m = microModel 51L in Checkpoint.Save(parent, m, ByteTokenizer.Instance))
    dir, parent, GrpoFixtures.writePrompts dir

let private experiment parent data =
    let step =
        grpo data |> Grpo.reward [ "share_of_a", 1.0 ] |> Grpo.group 4 |> Grpo.promptsPerStep 4 |> Grpo.maxNewTokens 6
        |> Stage.steps 8 |> Stage.lr 3e-2 |> Stage.logEvery 1 |> Stage.checkpointEvery 4 |> Stage.named "grpo"
    Experiment.create "grpo" (fromCheckpoint parent) step |> Experiment.seed 4L

let private run ws e = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e

let private trainRewards (ws: string) =
    let file = Directory.GetFiles(Path.Combine(ws, "nodes"), "metrics.jsonl", SearchOption.AllDirectories) |> Array.exactlyOne
    [ for o in MetricsLog.Read file do
        match o["kind"], o["reward"] with
        | NonNull k, NonNull r when string k = "train" -> r.GetValue<float>()
        | _ -> () ]

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "GrpoStage" [
        testCase "GRPO raises a dense verifiable reward; metrics report clipping and the sampler's log-prob gap" <| fun _ ->
            let dir, parent, data = setup ()
            let ws = Path.Combine(dir, "ws")
            let r = run ws (experiment parent data)
            let node = r.Runs[0].Node "grpo"
            Expect.equal node.Status "done" "trained"
            let rewards = trainRewards ws
            Expect.equal rewards.Length 8 "a reward per step"
            let first, last = List.average rewards[.. 2], List.average rewards[5 ..]
            printfn "grpo share_of_a: first 3 steps %.3f, last 3 steps %.3f; val %.3f -> %.3f" first last node.Metrics["val_reward_before"] node.Metrics["val_reward"]
            Expect.isGreaterThan last first "the training reward rises"
            Expect.isGreaterThan node.Metrics["val_reward"] node.Metrics["val_reward_before"] "and on held-out prompts"
            Expect.isLessThan node.Metrics["sampler_logprob_max_diff"] 1e-4 "the sampler's log-probs are the training forward's"
            Expect.isTrue (node.Metrics.ContainsKey "clip_high" && node.Metrics.ContainsKey "informative_groups") "clip and filter metrics"
            Expect.isTrue (File.Exists(Path.Combine(node.Directory, GrpoExecutor.ReportFile))) "grpo_report.json"

        testCase "a step's batch is a function of (seed, step, micro) and the model: built twice, identical" <| fun _ ->
            let _, _, data = setup ()
            use m = microModel 52L
            let prompts = PromptData.Read data
            let o = GrpoOptions(DataPath = data, Reward = [| RewardTerm "share_of_a" |], Group = 3, PromptsPerStep = 2, MaxNewTokens = 5)
            let objective = GrpoObjective(m, ByteTokenizer.Instance, prompts, o, 9L, "test")
            let cfg = o.Train
            use a = objective.Batch(3L, 0, cfg, torch.CPU)
            use b = objective.Batch(3L, 0, cfg, torch.CPU)
            for x, y in [ a.Input, b.Input; a.Targets, b.Targets; a.Mask, b.Mask; a.OldLogProbs, b.OldLogProbs; a.Advantages, b.Advantages ] do
                Expect.isTrue (x.shape = y.shape && x.eq(y).all().item<bool>()) "same tensors"
            use c = objective.Batch(4L, 0, cfg, torch.CPU)
            Expect.isFalse (a.Input.shape = c.Input.shape && a.Input.eq(c.Input).all().item<bool>()) "another step, other rollouts"
            Expect.equal a.Normalizer (a.Input.shape[0]) "grpo: normalized by completions"

        testCase "bad input: unknown reward, group of 1, a reward that returns NaN names the prompt" <| fun _ ->
            let dir, parent, data = setup ()
            let e (step: Step) = Experiment.create "grpo-bad" (fromCheckpoint parent) (step |> Stage.steps 2 |> Stage.named "grpo") |> Experiment.seed 1L
            throwsWith<ArgumentException> (fun () -> run (tempDir "g1") (e (grpo data |> Grpo.reward [ "no_such", 1.0 ])) |> ignore) [ "no reward named 'no_such'"; "share_of_a" ] "unknown"
            throwsWith<ArgumentException> (fun () -> run (tempDir "g2") (e (grpo data |> Grpo.group 1)) |> ignore) [ "group must be at least 2" ] "group 1"
            throwsWith<ArgumentException> (fun () -> run (tempDir "g4") (e (grpo data |> Grpo.prefix 0.5 0.0)) |> ignore) [ "prompts.jsonl:1"; "demonstration" ] "prefix without demonstrations"
            throwsWith<ArgumentException> (fun () -> run (tempDir "g5") (e (grpo data |> Grpo.maxNewTokens 60)) |> ignore) [ "prompts.jsonl:1"; "exceed the model's context of 64" ] "too long"
            throwsWith<ArgumentException> (fun () -> run (tempDir "g6") (e (onlineDpo data |> OnlineDpo.maxNewTokens 60)) |> ignore) [ "prompts.jsonl:1"; "context of 64" ] "too long for online DPO"
            Rewards.Register(Reward.Of("nan_reward", 1, fun _ _ _ -> nan))
            throwsWith<InvalidOperationException> (fun () -> run (tempDir "g3") (e (grpo data |> Grpo.reward [ "nan_reward", 1.0 ])) |> ignore)
                [ "reward 'nan_reward' returned NaN on prompt"; "say a" ] "NaN reward"
    
        testCase "online DPO: pairs judged by the reward, DPO against the frozen parent; the chosen reward leads" <| fun _ ->
            let dir, parent, data = setup ()
            Rewards.Register meanCode
            let ws = Path.Combine(dir, "ws-odpo")
            let step =
                onlineDpo data |> OnlineDpo.reward [ "mean_code", 1.0 ] |> OnlineDpo.promptsPerStep 4 |> OnlineDpo.maxNewTokens 6
                |> OnlineDpo.loss Research.Stages.PreferenceLoss.Sigmoid 0.1 |> Stage.steps 16 |> Stage.lr 3e-2 |> Stage.logEvery 1 |> Stage.named "odpo"
            let r = run ws (Experiment.create "odpo" (fromCheckpoint parent) step |> Experiment.seed 4L)
            let node = r.Runs[0].Node "odpo"
            Expect.equal node.Status "done" "trained"
            let rewards = trainRewards ws
            Expect.equal rewards.Length 16 "a reward per step"
            let m = node.Metrics
            let first, last = List.average rewards[.. 3], List.average rewards[12 ..]
            printfn "online dpo mean_code: first 4 steps %.3f, last 4 steps %.3f; val %.3f -> %.3f" first last m["val_reward_before"] m["val_reward"]
            Expect.isGreaterThan m["reward_chosen"] m["reward_rejected"] "the chosen sample is the higher-rewarded one"
            Expect.isGreaterThan last first "the training reward rises"
            Expect.isGreaterThan m["val_reward"] m["val_reward_before"] "and on held-out prompts"
            Expect.isTrue (m.ContainsKey "rewards/margins" && m.ContainsKey "tied_pairs" && m.ContainsKey "val_reward") "DPO's metrics, ties, held-out reward"
    ]
