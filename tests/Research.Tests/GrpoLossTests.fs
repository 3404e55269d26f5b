/// On-policy losses against hand-computed values on fixed tensors.
module Research.Tests.GrpoLossTests

open Expecto
open TorchSharp
open Research.Stages.Online
open Research.Tests.TestUtil

let private t (xs: float list) = torch.tensor(List.toArray xs, dtype = torch.float64)
let private t2 (rows: float list list) = torch.tensor(array2D rows, dtype = torch.float64)
let private values (x: torch.Tensor) = x.data<float>().ToArray() |> List.ofArray
let private close (tol: float) (actual: float list) (expected: float list) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: length"
    List.iter2 (fun a e -> Expect.isTrue (abs (a - e) <= tol) $"{what}: {actual} vs {expected}") actual expected

[<Tests>]
let tests =
    testList "GrpoLosses" [
        testCase "group advantages: GRPO's std scaling, Dr. GRPO's none, RLOO's leave-one-out" <| fun _ ->
            // Group 1 [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3); group 2 [2, 2, 2, 2]: all equal, advantages 0.
            use r = t [ 1.0; 0.0; 0.0; 1.0; 2.0; 2.0; 2.0; 2.0 ]
            let a = 0.5 / (sqrt (1.0 / 3.0) + 1e-4)
            close 1e-12 (values (GrpoLosses.GroupAdvantages(r, 4))) [ a; -a; -a; a; 0.0; 0.0; 0.0; 0.0 ] "GRPO"
            close 1e-12 (values (GrpoLosses.GroupAdvantages(r, 4, AdvantageScale.None))) [ 0.5; -0.5; -0.5; 0.5; 0.0; 0.0; 0.0; 0.0 ] "Dr. GRPO"
            // Batch std of the 8 rewards: mean 1.25, sum of squares 0.0625*2 + 1.5625*2 + 0.5625*4 = 5.5, / 7.
            let b = 0.5 / (sqrt (5.5 / 7.0) + 1e-4)
            close 1e-12 (values (GrpoLosses.GroupAdvantages(r, 4, AdvantageScale.Batch))) [ b; -b; -b; b; 0.0; 0.0; 0.0; 0.0 ] "batch std"
            // RLOO: 1 - (0 + 0 + 1)/3 = 2/3; 0 - (1 + 0 + 1)/3 = -2/3.
            close 1e-12 (values (GrpoLosses.LeaveOneOutAdvantages(r, 4))) [ 2.0/3.0; -2.0/3.0; -2.0/3.0; 2.0/3.0; 0.0; 0.0; 0.0; 0.0 ] "RLOO"
            Expect.equal (GrpoLosses.InformativeGroups(r, 4)) [| true; false |] "the all-equal group is filtered"

        testCase "bad rewards and groups are refused with the completion named" <| fun _ ->
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.GroupAdvantages(t [ 1.0; nan; 0.0; 1.0 ], 2) |> ignore)
                [ "reward 1"; "prompt 0, completion 1"; "finite" ] "NaN reward"
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.GroupAdvantages(t [ 1.0; 0.0; 1.0 ], 2) |> ignore) [ "whole groups of 2" ] "ragged"
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.LeaveOneOutAdvantages(t [ 1.0 ], 1) |> ignore) [ "at least 2" ] "RLOO group of 1"

        testCase "clipped surrogate with clip-higher: each case of the min, and the KL penalty" <| fun _ ->
            // ratios 1.5, 1.5, 0.5, 0.5 (one token per completion) with A = 1, -1, 1, -1; clip [0.8, 1.28]:
            // -min(1.5, 1.28) = -1.28; -min(-1.5, -1.28) = 1.5; -min(0.5, 0.8) = -0.5; -min(-0.5, -0.8) = 0.8.
            use old = t2 [ [ 0.0 ]; [ 0.0 ]; [ 0.0 ]; [ 0.0 ] ]
            use logp = t2 [ [ log 1.5 ]; [ log 1.5 ]; [ log 0.5 ]; [ log 0.5 ] ]
            use adv = t [ 1.0; -1.0; 1.0; -1.0 ]
            let s = GrpoLosses.Surrogate(logp, old, adv, epsLow = 0.2, epsHigh = 0.28)
            close 1e-12 (values (s.PerTokenLoss.reshape(-1L))) [ -1.28; 1.5; -0.5; 0.8 ] "per-token loss"
            Expect.equal (s.ClippedHigh.reshape(-1L).data<bool>().ToArray()) [| true; false; false; false |] "clipped high: ratio > 1.28 with A > 0"
            Expect.equal (s.ClippedLow.reshape(-1L).data<bool>().ToArray()) [| false; false; false; true |] "clipped low: ratio < 0.8 with A < 0"
            // k3 with ref - logp = ln 2: 2 - ln 2 - 1.
            use reference = logp + log 2.0
            let k = GrpoLosses.Surrogate(logp, old, adv, 0.2, 0.28, beta = 0.5, referenceLogProbs = reference)
            close 1e-12 (values (k.PerTokenLoss.reshape(-1L))) [ for x in [ -1.28; 1.5; -0.5; 0.8 ] -> x + 0.5 * (1.0 - log 2.0) ] "plus beta k3"
            close 1e-12 (values (GrpoLosses.K3(logp, logp).reshape(-1L))) [ 0.0; 0.0; 0.0; 0.0 ] "k3 is 0 at the reference"
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.Surrogate(logp, old, adv, beta = 0.1) |> ignore) [ "reference" ] "beta without a reference"

        testCase "gradient: zero through a clipped token, -ratio A / n through an unclipped one" <| fun _ ->
            use old = t2 [ [ 0.0; 0.0 ] ]
            use logp = t2 [ [ log 1.5; log 1.1 ] ]
            logp.requires_grad <- true
            use adv = t [ 1.0 ]
            use mask = t2 [ [ 1.0; 1.0 ] ]
            let s = GrpoLosses.Surrogate(logp, old, adv, 0.2, 0.28)
            use loss = GrpoLosses.Aggregate(s.PerTokenLoss, mask, LossAggregation.Grpo)
            loss.backward()
            close 1e-12 (values (logp.grad.reshape(-1L))) [ 0.0; -1.1 / 2.0 ] "d loss / d logp"

        testCase "aggregations: grpo, bnpo, dr_grpo, dapo on a ragged batch" <| fun _ ->
            use loss = t2 [ [ 1.0; 2.0; 3.0 ]; [ 4.0; 9.0; 9.0 ] ]
            use mask = t2 [ [ 1.0; 1.0; 1.0 ]; [ 1.0; 0.0; 0.0 ] ]
            let agg how = (GrpoLosses.Aggregate(loss, mask, how, maxCompletionLength = 3, rolloutTokens = 8L)).ToDouble()
            close 1e-12 [ agg LossAggregation.Grpo ] [ (6.0 / 3.0 + 4.0 / 1.0) / 2.0 ] "grpo: mean of per-completion means"
            close 1e-12 [ agg LossAggregation.Bnpo ] [ 10.0 / 4.0 ] "bnpo: over the micro-batch's tokens"
            close 1e-12 [ agg LossAggregation.DrGrpo ] [ 10.0 / (2.0 * 3.0) ] "dr_grpo: over completions x max length"
            close 1e-12 [ agg LossAggregation.Dapo ] [ 10.0 / 8.0 ] "dapo: over the rollout batch's tokens"
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.Aggregate(loss, mask, LossAggregation.DrGrpo) |> ignore) [ "maximum completion length" ] "dr_grpo needs it"
    
        testCase "k3 per token, its gradient, and beta k3 added to the surrogate" <| fun _ ->
            // d = ref - logp: ln(0.25/0.5) = -ln 2 and ln(0.5/0.25) = ln 2.
            // k3 = e^d - d - 1: 0.5 + ln 2 - 1 and 2 - ln 2 - 1; d k3 / d logp = 1 - e^d: 0.5 and -1.
            use logp = t2 [ [ log 0.5; log 0.25 ] ]
            logp.requires_grad <- true
            use reference = t2 [ [ log 0.25; log 0.5 ] ]
            let k = GrpoLosses.K3(logp, reference)
            close 1e-12 (values (k.reshape(-1L))) [ log 2.0 - 0.5; 1.0 - log 2.0 ] "k3"
            k.sum().backward()
            close 1e-12 (values (logp.grad.reshape(-1L))) [ 0.5; -1.0 ] "d k3 / d logp"
            // With A = 0 the surrogate is 0, so the per-token loss is beta k3 alone; the grpo aggregation averages it.
            use old = t2 [ [ log 0.5; log 0.25 ] ]
            use zero = t [ 0.0 ]
            let s = GrpoLosses.Surrogate(logp.detach(), old, zero, beta = 0.04, referenceLogProbs = reference)
            close 1e-12 (values (s.PerTokenLoss.reshape(-1L))) [ 0.04 * (log 2.0 - 0.5); 0.04 * (1.0 - log 2.0) ] "beta k3"
            close 1e-12 (values (s.Kl.reshape(-1L))) [ log 2.0 - 0.5; 1.0 - log 2.0 ] "the KL it reports"
            use mask = t2 [ [ 1.0; 1.0 ] ]
            close 1e-12 [ (GrpoLosses.Aggregate(s.PerTokenLoss, mask, LossAggregation.Grpo)).ToDouble() ] [ 0.04 * 0.25 ] "the mean of the two per-token losses: 0.04 (ln 2 - 0.5 + 1 - ln 2) / 2"

        testCase "RLOO: leave-one-out advantages through the surrogate are REINFORCE's gradient at ratio 1" <| fun _ ->
            // rewards [1, 0, 0]: 1 - 0 = 1, 0 - (1 + 0)/2 = -0.5 twice.
            use r = t [ 1.0; 0.0; 0.0 ]
            let a = GrpoLosses.Advantages(r, 3, Baseline.LeaveOneOut, AdvantageScale.None)
            close 1e-12 (values a) [ 1.0; -0.5; -0.5 ] "leave-one-out"
            close 1e-12 (values (GrpoLosses.Advantages(r, 3, Baseline.GroupMean, AdvantageScale.None))) [ 2.0/3.0; -1.0/3.0; -1.0/3.0 ] "group mean, for contrast"
            throwsWith<System.ArgumentException> (fun () -> GrpoLosses.Advantages(r, 3, Baseline.LeaveOneOut, AdvantageScale.Group) |> ignore) [ "not scaled" ] "RLOO is unscaled"
            // Each completion 2 tokens, logp = old: loss -A per token; grpo aggregation: d/d logp = -A / (2 x 3 completions).
            use logp = t2 [ [ -1.0; -2.0 ]; [ -0.5; -0.7 ]; [ -3.0; -1.0 ] ]
            logp.requires_grad <- true
            use old = logp.detach().clone()
            use mask = t2 [ [ 1.0; 1.0 ]; [ 1.0; 1.0 ]; [ 1.0; 1.0 ] ]
            let s = GrpoLosses.Surrogate(logp, old, a)
            close 1e-12 (values (s.PerTokenLoss.reshape(-1L))) [ -1.0; -1.0; 0.5; 0.5; 0.5; 0.5 ] "-A per token"
            (GrpoLosses.Aggregate(s.PerTokenLoss, mask, LossAggregation.Grpo)).backward()
            close 1e-12 (values (logp.grad.reshape(-1L))) [ for x in [ 1.0; -0.5; -0.5 ] do yield! [ -x / 6.0; -x / 6.0 ] ] "REINFORCE with the leave-one-out baseline"

        testCase "online DPO: the reward judges each pair; DPO on the judged pairs, ties weighted 0" <| fun _ ->
            let j = OnlineDpoLosses.Judge [| 1.0; 0.0; 0.0; 1.0; 0.5; 0.5 |]
            Expect.equal j [| Judgement(0, 1, false); Judgement(3, 2, false); Judgement(4, 5, true) |] "first wins, second wins, tie"
            throwsWith<System.ArgumentException> (fun () -> OnlineDpoLosses.Judge [| 1.0; 0.0; 1.0 |] |> ignore) [ "whole pairs" ] "odd count"
            throwsWith<System.ArgumentException> (fun () -> OnlineDpoLosses.Judge [| 1.0; nan |] |> ignore) [ "prompt 0"; "not finite" ] "NaN reward"
            // Pair 0: dc = -1 - (-1.5) = 0.5, dr = -3 - (-2) = -1, h = 1.5: -log sigma(0.1 x 1.5) = log(1 + e^-0.15).
            // Pair 1 (a tie) has weight 0. Rewards: beta dc, beta dr.
            let f (xs: float list) = torch.tensor(List.toArray xs |> Array.map float32)
            use chosen = new Research.Stages.SequenceLogProbs(f [ -1.0; -2.0 ], f [ 2.0; 3.0 ])
            use rejected = new Research.Stages.SequenceLogProbs(f [ -3.0; -1.0 ], f [ 2.0; 1.0 ])
            use refC = f [ -1.5; -2.0 ]
            use refR = f [ -2.0; -1.5 ]
            use w = f [ 1.0; 0.0 ]
            let struct (sum, pairs) = OnlineDpoLosses.Loss(chosen, rejected, refC, refR, w, Research.Stages.PreferenceOptions())
            close 1e-6 [ sum.ToDouble() ] [ log (1.0 + exp -0.15) ] "the DPO loss of the decided pair"
            close 1e-6 [ for x in pairs.ChosenRewards.data<float32>().ToArray() -> float x ] [ 0.05; 0.0 ] "rewards/chosen"
            close 1e-6 [ for x in pairs.RejectedRewards.data<float32>().ToArray() -> float x ] [ -0.1; 0.05 ] "rewards/rejected"

        testCase "prefix schedule: cosine and linear from the first rollout batch to the last, tokens rounded down" <| fun _ ->
            let sched = PrefixSchedule(From = 1.0, To = 0.0)
            close 1e-12 [ for g in 0L .. 4L -> sched.Fraction(g, 5L) ] [ 1.0; 0.5 * (1.0 + cos (System.Math.PI / 4.0)); 0.5; 0.5 * (1.0 - cos (System.Math.PI / 4.0)); 0.0 ] "cosine"
            Expect.equal [ for g in 0L .. 4L -> sched.Tokens(10, g, 5L) ] [ 10; 8; 5; 1; 0 ] "of 10 tokens: 10, floor 8.54, 5, floor 1.46, 0"
            let lin = PrefixSchedule(From = 0.2, To = 0.6, Shape = PrefixShape.Linear)
            close 1e-12 [ for g in 0L .. 2L -> lin.Fraction(g, 3L) ] [ 0.2; 0.4; 0.6 ] "linear, rising"
            Expect.isFalse (PrefixSchedule().Enabled) "off by default"
            throwsWith<System.ArgumentException> (fun () -> PrefixSchedule(From = 1.5).Validate()) [ "[0, 1]" ] "share above 1"

        testCase "a held rollout batch survives the checkpoint bit for bit" <| fun _ ->
            let b = RolloutBatch(2, 3, [| 1L; 2L; 3L; 4L; 5L; 6L |], [| 2L; 3L; 0L; 5L; 6L; 0L |], [| 0f; 1f; 0f; 1f; 1f; 0f |],
                                 [| 0f; -0.123456789f; 0f; -1.5f; -2.25f; 0f |], [| 0f; -0.2f; 0f; -1f; -2f; 0f |],
                                 [| 0.7f; -0.7f |], 2L, 6L, readOnlyDict [ "reward", 0.1234567890123 ])
            let state = b.ToTensors("micro0/") |> Seq.map (fun kv -> kv.Key, kv.Value) |> dict
            let back = RolloutBatch.FromTensors(System.Collections.Generic.Dictionary(state), "micro0/", "test")
            Expect.equal (back.Rows, back.Width, back.Normalizer, back.Tokens) (2, 3, 2L, 6L) "shape and counts"
            Expect.equal (back.Input, back.Targets, back.Mask, back.OldLogProbs, back.ReferenceLogProbs, back.Advantages)
                         (b.Input, b.Targets, b.Mask, b.OldLogProbs, b.ReferenceLogProbs, b.Advantages) "every array"
            Expect.equal back.Stats["reward"] 0.1234567890123 "stats"
            throwsWith<System.IO.InvalidDataException> (fun () -> RolloutBatch.FromTensors(System.Collections.Generic.Dictionary(state), "micro1/", "ckpt/objective.safetensors") |> ignore)
                [ "ckpt/objective.safetensors"; "micro1/input" ] "a missing entry names the file"
    ]
