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
    ]
