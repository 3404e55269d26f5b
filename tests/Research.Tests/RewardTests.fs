/// The reward model's Bradley–Terry loss against hand-computed values, the pair rule of preference distillation, and the
/// margin column; then the reward stage on a micro model: held-out pair accuracy rises, score.weight round-trips, and the
/// trained model scores text as an IReward (alone and in a weighted sum).
module Research.Tests.RewardTests

open System
open System.IO
open Expecto
open TorchSharp
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Stages.Online
open Research.Stages.Reward
open Research.Tests.TestUtil

let private t (xs: float list) = torch.tensor(List.toArray xs, dtype = torch.float64)
let private values (x: torch.Tensor) = x.data<float>().ToArray() |> List.ofArray
let private close (tol: float) (actual: float list) (expected: float list) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: length"
    List.iter2 (fun a e -> Expect.isTrue (abs (a - e) <= tol) $"{what}: {actual} vs {expected}") actual expected

[<Tests>]
let losses =
    testList "RewardLosses" [
        testCase "Bradley–Terry: -log sigma(r_c - r_r) on fixed rewards" <| fun _ ->
            // h = [1, 0, -2]: log(1 + e^-1) = 0.313261687518, log 2 = 0.693147180560, log(1 + e^2) = 2.126928011043.
            use l = RewardLosses.BradleyTerry(t [ 2.0; 0.0; -1.0 ], t [ 1.0; 0.0; 1.0 ])
            close 1e-12 (values l) [ 0.313261687518; 0.693147180560; 2.126928011043 ] "losses"

        testCase "with a margin: -log sigma(r_c - r_r - m)" <| fun _ ->
            // margins [0.5, -1, 0]: h = [0.5, 1, -2]: log(1 + e^-0.5) = 0.474076984180.
            use l = RewardLosses.BradleyTerry(t [ 2.0; 0.0; -1.0 ], t [ 1.0; 0.0; 1.0 ], t [ 0.5; -1.0; 0.0 ])
            close 1e-12 (values l) [ 0.474076984180; 0.313261687518; 2.126928011043 ] "losses"

        testCase "gradient: d/d r_c = -sigma(-h), d/d r_r = +sigma(-h)" <| fun _ ->
            use c = t [ 2.0; 0.0; -1.0 ]
            use r = t [ 1.0; 0.0; 1.0 ]
            c.requires_grad <- true
            r.requires_grad <- true
            use m = t [ 0.0; 0.0; 1.0 ]
            use l = RewardLosses.BradleyTerry(c, r, m)
            l.sum().backward()
            // h = [1, 0, -3]: sigma(-h) = [0.268941421370, 0.5, 0.952574126822].
            close 1e-12 (values c.grad) [ -0.268941421370; -0.5; -0.952574126822 ] "d/d chosen"
            close 1e-12 (values r.grad) [ 0.268941421370; 0.5; 0.952574126822 ] "d/d rejected"

        testCase "shapes are checked, naming both" <| fun _ ->
            throwsWith<ArgumentException> (fun () -> RewardLosses.BradleyTerry(t [ 1.0; 2.0 ], t [ 1.0 ]) |> ignore) [ "chosen [2]"; "rejected [1]" ] "mismatch"
            throwsWith<ArgumentException> (fun () -> RewardLosses.BradleyTerry(t [ 1.0 ], t [ 1.0 ], t [ 1.0; 2.0 ]) |> ignore) [ "margin [2]" ] "margin"

        testCase "pair accuracy counts a tie as wrong" <| fun _ ->
            Expect.equal (RewardLosses.Accuracy([| 1.0; 2.0; 0.0; 3.0 |], [| 0.0; 2.0; 1.0; 1.0 |])) 0.5 "2 of 4"

        testCase "pair rule: best (first on a tie) vs worst (last on a tie); ties, gaps and empty candidates give no pair" <| fun _ ->
            let all n = Array.create n true
            let pick scores usable gap = PairRule.Choose(scores, usable, gap) |> Option.ofNullable |> Option.map (fun (struct (c, r)) -> c, r)
            Expect.equal (pick [| 0.2; 0.9; 0.1; 0.9; 0.1 |] (all 5) 0.0) (Some (1, 4)) "first best, last worst"
            Expect.equal (pick [| 0.5; 0.5; 0.5 |] (all 3) 0.0) None "all tied: no pair"
            Expect.equal (pick [| 0.5; 0.6 |] (all 2) 0.1) None "gap 0.1 not above min gap 0.1"
            Expect.equal (pick [| 0.5; 0.7 |] (all 2) 0.1) (Some (1, 0)) "gap 0.2 kept"
            Expect.equal (pick [| 1.0; 0.5; 0.0 |] [| false; true; true |] 0.0) (Some (1, 2)) "an empty candidate is never a side"
            Expect.equal (pick [| 1.0; 0.5 |] [| false; true |] 0.0) None "one usable candidate: no pair"

        testCase "the margin column: read per line, absent = 0, a non-number is an error naming the line" <| fun _ ->
            let dir = tempDir "reward-margin"
            let f = Path.Combine(dir, "p.jsonl")
            File.WriteAllLines(f, [ """{"prompt": "q", "chosen": "a", "rejected": "b", "margin": 1.5}"""; """{"prompt": "q", "chosen": "a", "rejected": "b"}""" ])
            let m = RewardData.Margins f
            Expect.equal m[1] 1.5 "line 1"
            Expect.isFalse (m.ContainsKey 2) "line 2 has none"
            let pairs = RewardData.Prepare(f, ByteTokenizer.Instance, 64, 32, 0.0, 1L)
            Expect.equal [ for p in pairs.Train -> p.Margin ] [ 1.5; 0.0 ] "margins of the pairs"
            Expect.equal pairs.Train[0].Chosen[pairs.Train[0].Chosen.Length - 1] ByteTokenizer.Eos "a row ends with EOS, where the head pools"
            File.WriteAllLines(f, [ """{"prompt": "q", "chosen": "a", "rejected": "b", "margin": "big"}""" ])
            throwsWith<CorpusException> (fun () -> RewardData.Margins f |> ignore) [ "p.jsonl:1"; "\"margin\" must be a finite number" ] "string margin"
    ]

/// Prompts "q i:" whose chosen answer ends "yes" and rejected ends "no", the bodies random letters: a preference a
/// micro model can learn in a few steps, and that no position of the prompt gives away.
let private writePreferences (dir: string) (file: string) (seed: int) (first: int) (n: int) =
    let rng = Random seed
    let word () = String(Array.init (2 + rng.Next 4) (fun _ -> char (int 'a' + rng.Next 26)))
    let f = Path.Combine(dir, file)
    File.WriteAllLines(f, [ for i in first .. first + n - 1 ->
                              let body = word ()
                              $"{{\"prompt\": \"q {i}:\", \"chosen\": \"{body} yes\", \"rejected\": \"{word ()} no\"}}" ])
    f

let private run ws e = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e

[<Tests>]
let stage =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "RewardStage" [
        testCase "score.weight round-trips through a checkpoint and scores the same" <| fun _ ->
            let dir = tempDir "reward-roundtrip"
            let config = SequenceClassification.WithHead(microConfig, RewardModel.Labels)
            use m = new CausalLM(config, 3L)
            Checkpoint.Save(dir, m, ByteTokenizer.Instance)
            use rm = RewardModel.Load("rt", dir)
            let row = RewardData.Row(ByteTokenizer.Instance, "q:", " yes", 64, 32)
            let here = RewardModel.Scores(m, [| row |], ByteTokenizer.Pad, 1)[0]
            Expect.floatClose Accuracy.high (rm.Score("q:", " yes", null)) here "the loaded model scores as the saved one"
            let struct (loaded, _) = Checkpoint.Load dir
            use loaded = loaded
            Expect.equal (loaded.ScoreHead.weight.shape) [| 1L; 32L |] "score.weight [num_labels 1, hidden]"
            Expect.equal (maxAbsDiff loaded.ScoreHead.weight m.ScoreHead.weight) 0.0 "bit for bit"
            Expect.equal (RewardModel.WeightsVersion dir) rm.Version "version = weights digest"
            throwsWith<InvalidDataException> (fun () -> RewardModel.Load("lm", (let d = tempDir "lm" in (use lm = microModel 1L in Checkpoint.Save(d, lm, ByteTokenizer.Instance)); d)) |> ignore)
                [ "num_labels 1"; "no num_labels" ] "a language model is not a reward model"

        testCase "the reward stage raises held-out pair accuracy above chance; the saved model is an IReward" <| fun _ ->
            let dir = tempDir "reward-stage"
            let parent = Path.Combine(dir, "parent")
            (use m = microModel 61L in Checkpoint.Save(parent, m, ByteTokenizer.Instance))
            let prefs = writePreferences dir "prefs.jsonl" 7 0 48
            let heldOut = writePreferences dir "heldout.jsonl" 8 200 16
            let step = rewardModel prefs |> RewardModels.validationFraction 0.25 |> Stage.steps 30 |> Stage.lr 3e-3 |> Stage.batch 8 |> Stage.logEvery 5 |> Stage.named "rm"
            let e = Experiment.create "rm" (fromCheckpoint parent) step |> Experiment.seed 2L |> Experiment.evaluateEach [ fun _ -> RewardModels.suite "heldout" heldOut ]
            let r = run (Path.Combine(dir, "ws")) e
            let node = r.Runs[0].Node "rm"
            let suite = node.Evaluations["heldout"]
            printfn "reward suite on 16 other pairs: pair accuracy %.3f, margin %.3f" suite["pair_accuracy"] suite["reward_margin"]
            Expect.isGreaterThanOrEqual suite["pair_accuracy"] 0.9 "the stage's evaluation: pair accuracy on another file"
            Expect.equal suite["count"] 16.0 "every pair scored"
            Expect.isEmpty (r.Runs[0].Node "checkpoint").Evaluations["heldout"] "a language model has no pair accuracy"
            let m = node.Metrics
            printfn "reward stage: held-out pair accuracy %.3f before, %.3f after (%d held-out pairs); margin %.3f" m["val_pair_accuracy_before"] m["val_pair_accuracy"] 12 m["val_reward_margin"]
            Expect.isGreaterThanOrEqual m["val_pair_accuracy"] 0.9 "held-out pairs ranked right (chance is 0.5)"
            Expect.isGreaterThan m["val_pair_accuracy"] m["val_pair_accuracy_before"] "better than the untrained head"
            let config = ModelConfig.Load(Path.Combine(node.Checkpoint, "config.json"))
            Expect.equal config.NumLabels (Nullable 1) "num_labels 1 in config.json"
            Expect.isTrue (File.Exists(Path.Combine(node.Directory, RewardExecutor.ReportFile))) "reward_report.json"
            // The checkpoint as a reward: held-out style text, scored from strings.
            use rm = RewardModel.Load("rm_test", node.Checkpoint)
            let wins = [ for i in 0 .. 19 -> rm.Score($"q {100 + i}:", $"zq{i} yes", null) > rm.Score($"q {100 + i}:", $"zq{i} no", null) ]
            let share = float (wins |> List.filter id |> List.length) / 20.0
            printfn "reward model as IReward: prefers 'yes' on %.2f of 20 new prompts" share
            Expect.isGreaterThanOrEqual share 0.8 "the IReward prefers what the pairs preferred"
            Rewards.Register rm
            Rewards.Register(Reward.Of("ends_yes", 1, fun _ c _ -> if c.EndsWith "yes" then 1.0 else 0.0))
            let sum = Rewards.Score([| RewardTerm("rm_test", 2.0); RewardTerm("ends_yes", 0.5) |], "q 1:", "ab yes", null, 0)
            Expect.floatClose Accuracy.high sum (2.0 * rm.Score("q 1:", "ab yes", null) + 0.5) "a weighted sum with a verifiable reward"
            Expect.stringContains (Rewards.Fingerprint [| RewardTerm "rm_test" |]) $"rm_test@{rm.Version}" "the weights digest is in the key"
            // GRPO on the reward model's scores, beside a verifiable reward.
            let prompts = GrpoFixtures.writePrompts dir
            let rl = grpo prompts |> Grpo.reward [ "rm_test", 1.0; "ends_yes", 0.5 ] |> Grpo.group 3 |> Grpo.promptsPerStep 2 |> Grpo.maxNewTokens 4 |> Stage.steps 2 |> Stage.logEvery 1 |> Stage.checkpointEvery 2 |> Stage.named "grpo"
            let g = run (Path.Combine(dir, "ws-grpo")) (Experiment.create "rm-grpo" (fromCheckpoint parent) rl |> Experiment.seed 2L)
            Expect.equal (g.Runs[0].Node "grpo").Status "done" "grpo trained on the reward model"
            Expect.isTrue (Double.IsFinite (g.Runs[0].Node "grpo").Metrics["reward"]) "its reward is the model's"
            // In one pipeline: the reward stage as the second parent of grpo and online DPO, no registration.
            let ws = Path.Combine(dir, "ws-pipeline")
            let start = fromCheckpoint parent
            let rmStage = start |> step
            let both =
                Experiment.createBranches "rm-parent" start (fun start ->
                    [ start |> (grpo prompts |> Grpo.reward [] |> Grpo.rewardModel rmStage 1.0 |> Grpo.group 3 |> Grpo.promptsPerStep 2 |> Grpo.maxNewTokens 4 |> Stage.steps 2 |> Stage.logEvery 1 |> Stage.checkpointEvery 2 |> Stage.named "grpo")
                      start |> (onlineDpo prompts |> OnlineDpo.reward [ "ends_yes", 0.5 ] |> OnlineDpo.rewardModel rmStage 2.0 |> OnlineDpo.promptsPerStep 2 |> OnlineDpo.maxNewTokens 4 |> Stage.steps 2 |> Stage.logEvery 1 |> Stage.checkpointEvery 2 |> Stage.named "odpo") ])
                |> Experiment.seed 2L
            let p = run ws both
            Expect.equal (p.Runs[0].Node "rm").Key node.Key "the same reward stage, the same key"
            for name in [ "grpo"; "odpo" ] do Expect.equal (p.Runs[0].Node name).Status "done" $"{name} trained on the reward-model parent"
            let report = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine((p.Runs[0].Node "grpo").Directory, GrpoExecutor.ReportFile)))
            Expect.stringStarts (report["reward"].GetValue<string>()) $"reward_model@{rm.Version}*1" "grpo's reward is the model"
            let plain = grpo prompts |> Grpo.group 3 |> Stage.named "grpo"
            Expect.equal ((plain (fromCheckpoint parent)).ConfigJson.Contains "RewardModelWeight") false "a stage without a reward model keeps its config (and key)"
            Expect.stringContains (p.Runs[0].Node "grpo" |> fun n -> File.ReadAllText(Path.Combine(n.Directory, "node.json"))) "\"RewardModelWeight\": 1" "and one with it says so"
    ]
