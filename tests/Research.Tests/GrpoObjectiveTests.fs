/// The GRPO objective on a micro model without the training loop: iterations on held rollouts, the clip, prefix sampling.
module Research.Tests.GrpoObjectiveTests

open System
open System.IO
open Expecto
open Research
open Research.Data
open Research.Models
open Research.Stages.Online
open Research.Tests.TestUtil
open TorchSharp

let private prompts () = GrpoFixtures.writePrompts (tempDir "grpo-prompts")

/// The mean character code of a completion, each capped at 255, / 255 (a byte that is not UTF-8 decodes to U+FFFD, so
/// counts 1): dense and continuous, so every group of random samples is informative.
let private meanCode = Reward.Of("mean_code", 2, fun _ completion _ -> if completion.Length = 0 then 0.0 else (completion |> Seq.averageBy (fun c -> float (min (int c) 255))) / 255.0)

let private same (x: torch.Tensor) (y: torch.Tensor) = x.shape = y.shape && x.eq(y).all().item<bool>()

[<Tests>]
let tests =
    testList "GrpoObjective" [
        testCase "iterations: a rollout batch is held for mu steps; after an update the ratio leaves 1 and the clip engages" <| fun _ ->
            let data = prompts ()
            use m = microModel 53L
            use reference = GrpoExecutor.Frozen(microModel 53L)
            let prompts = PromptData.Read data
            Rewards.Register meanCode
            let o = GrpoOptions(DataPath = data, Reward = [| RewardTerm "mean_code" |], Group = 4, PromptsPerStep = 3, MaxNewTokens = 6, Iterations = 2,
                                Beta = 0.1, FilterUninformative = false)
            let cfg = o.Train
            throwsWith<InvalidOperationException> (fun () -> GrpoObjective(m, ByteTokenizer.Instance, prompts, o, 9L, "test", reference).Batch(1L, 0, cfg, torch.CPU) |> ignore)
                [ "iteration 1 on rollout batch 0"; "neither drawn" ] "a later iteration without its rollouts"
            let objective = GrpoObjective(m, ByteTokenizer.Instance, prompts, o, 9L, "test", reference)
            use b0 = objective.Batch(0L, 0, cfg, torch.CPU)
            use b1 = objective.Batch(1L, 0, cfg, torch.CPU)
            for x, y in [ b0.Input, b1.Input; b0.OldLogProbs, b1.OldLogProbs; b0.Advantages, b1.Advantages; b0.ReferenceLogProbs, b1.ReferenceLogProbs ] do
                Expect.isTrue (same x y) "iteration 1 trains on iteration 0's rollouts and old log-probs"
            Expect.equal (b0.Iteration, b1.Iteration) (0, 1) "iterations"
            use sink = new Research.Training.MetricSink()
            let loss = objective.Loss(m, b0, sink) / float b0.Normalizer
            loss.backward()
            (use _ = torch.no_grad() in for p in m.parameters() do p.sub_(p.grad.mul(torch.tensor 0.3f)) |> ignore)
            let first = sink.Drain()
            Expect.equal (first["clip_low"] + first["clip_high"]) 0.0 "iteration 0: the ratio is 1, nothing is clipped"
            Expect.isLessThan first["kl"] 1e-6 "the policy is still the reference"
            Expect.isLessThan first["sampler_logprob_max_diff"] 1e-4 "sampler and training forward agree"
            objective.Loss(m, b1, sink) |> ignore
            let second = sink.Drain()
            printfn "grpo iteration 1 after one update: clip_low %.3f clip_high %.3f kl %.4f" second["clip_low"] second["clip_high"] second["kl"]
            Expect.isGreaterThan (second["clip_low"] + second["clip_high"]) 0.0 "iteration 1: the update moved ratios past the clip range"
            Expect.isGreaterThan second["kl"] 0.0 "and away from the reference"
            Expect.isFalse (second.ContainsKey "sampler_logprob_max_diff") "the sampler gap is measured where the policy is the sampler only"
            use b2 = objective.Batch(2L, 0, cfg, torch.CPU)
            Expect.isFalse (same b0.Input b2.Input) "step 2 draws rollout batch 1"

        testCase "prefix sampling: rollouts continue the scheduled share of the demonstration, scored with it, trained without it" <| fun _ ->
            let dir = tempDir "prefix"
            let data = Path.Combine(dir, "prompts.jsonl")
            File.WriteAllLines(data, [ for i in 0 .. 3 -> $"{{\"prompt\": \"q{i}:\", \"answer\": \"x\", \"demonstration\": \"abcdefgh\"}}" ])
            Rewards.Register(Reward.Of("starts_abcd", 1, fun _ c _ -> if c.StartsWith "abcd" then 1.0 else 0.0))
            use m = microModel 54L
            let o = GrpoOptions(DataPath = data, Reward = [| RewardTerm "starts_abcd" |], Group = 2, PromptsPerStep = 2, MaxNewTokens = 3,
                                Prefix = PrefixSchedule(From = 1.0, To = 0.0), FilterUninformative = false)
            let cfg = o.Train.WithSteps 3
            let objective = GrpoObjective(m, ByteTokenizer.Instance, PromptData.Read data, o, 5L, "test")
            let firstOne (row: torch.Tensor) = let nz = row.nonzero() in nz[0].item<int64>()
            let firstTrained (b: GrpoBatch) = [ for row in 0L .. b.Mask.shape[0] - 1L -> firstOne b.Mask[row] ]
            let demo = ByteTokenizer.Instance.Encode "abcdefgh"
            let prompt = GrpoObjective.Ids(ByteTokenizer.Instance, "q0:").Length                          // every prompt has 3 characters
            for step, prefix in [ 0L, 8; 1L, 4; 2L, 0 ] do                                                 // cosine from all 8 tokens to none
                use b = objective.Batch(step, 0, cfg, torch.CPU)
                Expect.equal b.Stats["prefix_tokens"] (float prefix) $"step {step}: the prefix"
                Expect.equal (firstTrained b |> List.distinct) [ int64 (prompt + prefix - 1) ] $"step {step}: the loss starts after prompt and prefix"
                let row = [ for t in 0 .. prompt + prefix - 1 -> b.Input[0L, int64 t].item<int64>() ] |> List.skip prompt
                Expect.equal row [ for id in demo[.. prefix - 1] -> int64 id ] $"step {step}: the rows hold the demonstration's prefix"
                Expect.equal b.Stats["reward"] (if prefix >= 4 then 1.0 else b.Stats["reward"]) $"step {step}: the reward sees the prefix"
            File.WriteAllLines(data, [ "{\"prompt\": \"q:\", \"answer\": \"x\"}" ])
            throwsWith<ArgumentException> (fun () -> GrpoObjective(m, ByteTokenizer.Instance, PromptData.Read data, o, 5L, "test") |> ignore)
                [ "prompts.jsonl:1"; "demonstration" ] "a prompt without a demonstration"

    
        testCase "the DSL: rloo, Grpo.beta, Grpo.iterations, Grpo.prefix and onlineDpo set what they say" <| fun _ ->
            let dir = tempDir "grpo-dsl"
            (use m = microModel 55L in Checkpoint.Save(dir, m, ByteTokenizer.Instance))
            let parent = fromCheckpoint dir
            let g = (rloo "p.jsonl" |> Grpo.beta 0.04 |> Grpo.iterations 2 |> Grpo.prefix 0.8 0.1) parent
            let o = g.Config :?> GrpoOptions
            Expect.equal (g.Kind, o.Baseline, o.Scale, o.Beta, o.Iterations) ("grpo", Baseline.LeaveOneOut, AdvantageScale.None, 0.04, 2) "rloo with beta and mu"
            Expect.equal (o.Prefix.From, o.Prefix.To, o.Prefix.Shape) (0.8, 0.1, PrefixShape.Cosine) "the prefix schedule"
            let d = (onlineDpo "p.jsonl" |> OnlineDpo.loss Research.Stages.PreferenceLoss.Ipo 0.3 |> OnlineDpo.promptsPerStep 6) parent
            let od = d.Config :?> OnlineDpoOptions
            Expect.equal (d.Kind, od.Preference.Beta, od.Preference.Losses[0].Kind, od.PromptsPerStep) ("online_dpo", 0.3, Research.Stages.PreferenceLoss.Ipo, 6) "online DPO"
            throwsWith<ArgumentException> (fun () -> (o.WithTrain(o.Train.WithSteps 5) :?> GrpoOptions).Validate() |> ignore) [ "multiple of iterations" ] "steps and mu"
            throwsWith<ArgumentException> (fun () -> o.WithScale(AdvantageScale.Group).Validate() |> ignore) [ "not scaled" ] "RLOO with std scaling"
    ]
