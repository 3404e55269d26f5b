/// The align losses against values computed here with System.Math on fixed small inputs (never by the code under test).
module Research.Tests.AlignTests

open System
open System.Collections.Generic
open Expecto
open TorchSharp
open Research.Stages
open Research.Tests.TestUtil

let private f64 (xs: float[]) = torch.tensor(xs, dtype = torch.float64)
let private vals (t: torch.Tensor) = t.detach().``to``(torch.float64).contiguous().data<float>().ToArray()
let private scalar (t: torch.Tensor) = t.detach().``to``(torch.float64).item<float>()

let private sigma x = 1.0 / (1.0 + Math.Exp(-x))
let private logSigma x = -Math.Log(1.0 + Math.Exp(-x))

let private close (tol: float) (actual: float[]) (expected: float[]) what =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        if abs (actual[i] - expected[i]) > tol * (1.0 + abs expected[i]) then
            failtestf "%s: element %d is %.12g, expected %.12g" what i actual[i] expected[i]

// Four pairs: summed log-ratios, completion lengths. Pair 3 has h = 0; pair 1 has h < 0.
let private dc = [| 1.5; -0.7; 3.0; 0.25 |]
let private dr = [| 0.5; 0.8; -2.0; 0.25 |]
let private lc = [| 3.0; 5.0; 2.0; 4.0 |]
let private lr = [| 4.0; 2.0; 6.0; 1.0 |]
let private beta = 0.5

/// Expected per-pair loss of each kind, written from the anchors' formulas.
let private expected (kind: PreferenceLoss) (eps: float) i =
    let c, r = dc[i], dr[i]
    let h = c - r
    let ca, ra = c / lc[i], r / lr[i]
    match kind with
    | PreferenceLoss.Sigmoid -> -(1.0 - eps) * logSigma (beta * h) - eps * logSigma (-beta * h)
    | PreferenceLoss.Robust -> (-(1.0 - eps) * logSigma (beta * h) + eps * logSigma (-beta * h)) / (1.0 - 2.0 * eps)
    | PreferenceLoss.Hinge -> max 0.0 (1.0 - beta * h)
    | PreferenceLoss.Ipo -> Math.Pow(ca - ra - 1.0 / (2.0 * beta), 2.0)
    | PreferenceLoss.SigmoidNorm -> -logSigma (beta * (ca - ra))
    | PreferenceLoss.SppoHard -> Math.Pow(c - 1.0 / (2.0 * beta), 2.0) + Math.Pow(r + 1.0 / (2.0 * beta), 2.0)
    | PreferenceLoss.ApoZero -> 1.0 - sigma (beta * c) + sigma (beta * r)
    | PreferenceLoss.NcaPair -> -logSigma (beta * c) - 0.5 * logSigma (-beta * c) - 0.5 * logSigma (-beta * r)
    | PreferenceLoss.BcoPair -> -logSigma (beta * c) - logSigma (-beta * r)
    | k -> failwithf "no expectation for %A" k

let private perPair kind eps =
    use l = PreferenceLosses.PerPair(kind, f64 dc, f64 dr, f64 lc, f64 lr, beta, eps)
    vals l

let private seqLp (sums: float[]) (counts: float[]) = new SequenceLogProbs(f64 sums, f64 counts)

let private sequenceLogProbs =
    testList "SequenceLogProbs" [
        testCase "sums log-softmax at the targets, skipping -100, and counts them" <| fun _ ->
            // (B=2, T=3, V=4) logits written out; targets: row 0 scores t=0 and t=2, row 1 scores t=1 only.
            let logits =
                [| [| [| 0.1; 0.2; -0.3; 1.0 |]; [| 2.0; -1.0; 0.0; 0.5 |]; [| -0.5; 0.0; 0.5; 1.5 |] |]
                   [| [| 1.0; 1.0; 1.0; 1.0 |]; [| 0.0; 3.0; -2.0; 0.25 |]; [| 9.0; -9.0; 4.0; 0.0 |] |] |]
            let targets = [| [| 3L; -100L; 2L |]; [| -100L; 1L; -100L |] |]
            let flat = logits |> Array.collect (Array.collect id)
            let lt = torch.tensor(flat, dtype = torch.float64).view(2L, 3L, 4L)
            let tt = torch.tensor(targets |> Array.collect id, dtype = torch.int64).view(2L, 3L)
            use r = SequenceLogProbs.Compute(lt, tt)
            let logp (row: float[]) k = row[k] - Math.Log(row |> Array.sumBy Math.Exp)
            let want0 = logp logits.[0].[0] 3 + logp logits.[0].[2] 2
            let want1 = logp logits.[1].[1] 1
            Expect.equal r.Sum.dtype torch.float32 "fp32 whatever the logits' dtype"
            close 1e-6 (vals r.Sum) [| want0; want1 |] "sums"
            Expect.equal (vals r.Count) [| 2.0; 1.0 |] "counts of scored tokens"
            close 1e-6 (vals (r.Average())) [| want0 / 2.0; want1 |] "average per token"

        testCase "a row with nothing scored gives 0 and count 0; matches a manual gather" <| fun _ ->
            use logits = torch.randn([| 2L; 5L; 7L |], generator = new torch.Generator(7UL))
            use targets = torch.tensor([| 1L; 2L; 3L; -100L; 6L; -100L; -100L; -100L; -100L; -100L |], dtype = torch.int64).view(2L, 5L)
            use r = SequenceLogProbs.Compute(logits, targets)
            let lsm = logits.log_softmax(-1L)
            let manual = [ for t, k in [ 0, 1L; 1, 2L; 2, 3L; 4, 6L ] -> lsm[0L, int64 t, k].item<float32>() |> float ] |> List.sum
            close 1e-5 (vals r.Sum) [| manual; 0.0 |] "row 0 = manual gather; row 1 = 0"
            Expect.equal (vals r.Count) [| 4.0; 0.0 |] "counts"
            close 1e-5 (vals (r.Average())) [| manual / 4.0; 0.0 |] "average of an empty row is 0, not NaN"

        testCase "shape mismatch is refused with both shapes" <| fun _ ->
            throwsWith<ArgumentException>
                (fun () -> SequenceLogProbs.Compute(torch.zeros(2L, 3L, 4L), torch.zeros([| 2L; 4L |], dtype = torch.int64)) |> ignore)
                [ "[2, 3, 4]"; "[2, 4]" ] "shape check"
    ]

let private pairwise =
    testList "pairwise losses" [
        for kind in Enum.GetValues<PreferenceLoss>() do
            testCase $"{kind} equals its formula" <| fun _ ->
                close 1e-12 (perPair kind 0.0) (Array.init 4 (expected kind 0.0)) (string kind)

        testCase "literal values at h = 0 and beta 0.1 (the default)" <| fun _ ->
            let z = f64 [| 0.0 |]
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.Sigmoid(z, 0.1))) (Math.Log 2.0) "DPO at h = 0 is ln 2 = 0.693147"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.Hinge(z, 0.1))) 1.0 "hinge at h = 0 is 1"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.Ipo(z, z, 0.1))) 25.0 "IPO at 0 is (1/(2*0.1))^2 = 25"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.SppoHard(z, z, 0.1))) 50.0 "SPPO at 0 is 25 + 25"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.ApoZero(z, z, 0.1))) 1.0 "APO-zero at 0 is 1 - 1/2 + 1/2"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.NcaPair(z, z, 0.1))) (2.0 * Math.Log 2.0) "NCA at 0 is 2 ln 2"
            Expect.floatClose Accuracy.veryHigh (scalar (PreferenceLosses.BcoPair(z, z, 0.1))) (2.0 * Math.Log 2.0) "BCO at 0 is 2 ln 2"

        testCase "label smoothing: conservative (sigmoid) and robust at eps 0.2" <| fun _ ->
            close 1e-12 (perPair PreferenceLoss.Sigmoid 0.2) (Array.init 4 (expected PreferenceLoss.Sigmoid 0.2)) "cDPO"
            close 1e-12 (perPair PreferenceLoss.Robust 0.2) (Array.init 4 (expected PreferenceLoss.Robust 0.2)) "robust"
            close 1e-12 (perPair PreferenceLoss.Robust 0.0) (perPair PreferenceLoss.Sigmoid 0.0) "robust at eps 0 is DPO"

        testCase "IPO uses length-averaged log-ratios" <| fun _ ->
            // pair 0: 1.5/3 - 0.5/4 - 1 = -0.625, squared
            Expect.floatClose Accuracy.veryHigh (perPair PreferenceLoss.Ipo 0.0).[0] 0.390625 "(-0.625)^2"
    ]

let private combined =
    testList "pairs objective" [
        testCase "weighted sum of losses plus the RPO term, with the standard metrics" <| fun _ ->
            let refC = [| -4.0; -3.0; -10.0; -2.0 |]
            let refR = [| -5.0; -6.0; -1.0; -2.5 |]
            let pc = Array.map2 (+) refC dc
            let pr = Array.map2 (+) refR dr
            let terms = [| WeightedPreferenceLoss(PreferenceLoss.Sigmoid, 0.7); WeightedPreferenceLoss(PreferenceLoss.Hinge, 0.3) |]
            let o = PreferenceOptions(Beta = beta, SftWeight = 0.5, Losses = (terms :> IReadOnlyList<_>))
            let r = PreferenceLosses.Pairs(seqLp pc lc, seqLp pr lr, f64 refC, f64 refR, o)
            let want = Array.init 4 (fun i -> 0.7 * expected PreferenceLoss.Sigmoid 0.0 i + 0.3 * expected PreferenceLoss.Hinge 0.0 i + 0.5 * (-pc[i] / lc[i]))
            close 1e-12 (vals r.Losses) want "0.7 DPO + 0.3 hinge + 0.5 NLL/token"
            let m = r.Metrics()
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/chosen"]) (beta * Array.average dc) "rewards/chosen = beta mean dc"
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/rejected"]) (beta * Array.average dr) "rewards/rejected = beta mean dr"
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/margins"]) (beta * (Array.average dc - Array.average dr)) "margins"
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/accuracy"]) 0.5 "h > 0 for pairs 0 and 2 only (h = 0 is not a win)"
            Expect.floatClose Accuracy.veryHigh (scalar m.["nll/chosen"]) (Array.average (Array.init 4 (fun i -> -pc[i] / lc[i]))) "nll metric"

        testCase "DPO gradient w.r.t. policy log-probs is -+beta sigma(-beta h); none reaches the reference" <| fun _ ->
            let refC = [| -4.0; -3.0; -10.0; -2.0 |]
            let refR = [| -5.0; -6.0; -1.0; -2.5 |]
            use pc = torch.tensor(Array.map2 (+) refC dc, dtype = torch.float64, requires_grad = true)
            use pr = torch.tensor(Array.map2 (+) refR dr, dtype = torch.float64, requires_grad = true)
            use rc = torch.tensor(refC, dtype = torch.float64, requires_grad = true)
            use rr = torch.tensor(refR, dtype = torch.float64, requires_grad = true)
            let r = PreferenceLosses.Pairs(new SequenceLogProbs(pc, f64 lc), new SequenceLogProbs(pr, f64 lr), rc, rr, PreferenceOptions(Beta = beta))
            r.Losses.sum().backward()
            let g = Array.init 4 (fun i -> beta * sigma (-beta * (dc[i] - dr[i])))
            close 1e-12 (vals pc.grad) (Array.map (~-) g) "d/d logp_chosen = -beta sigma(-beta h)"
            close 1e-12 (vals pr.grad) g "d/d logp_rejected = +beta sigma(-beta h)"
            Expect.isNull rc.grad "reference chosen gets no gradient"
            Expect.isNull rr.grad "reference rejected gets no gradient"

        testCase "options are validated with the field's name" <| fun _ ->
            throwsWith<ArgumentException> (fun () -> PreferenceLosses.Pairs(seqLp dc lc, seqLp dr lr, f64 dc, f64 dr, PreferenceOptions(Beta = 0.0)) |> ignore) [ "beta" ] "beta 0"
            throwsWith<ArgumentException> (fun () -> PreferenceLosses.Pairs(seqLp dc lc, seqLp dr lr, f64 dc, f64 dr, PreferenceOptions(LabelSmoothing = 0.5)) |> ignore) [ "label_smoothing" ] "eps 0.5"
    ]

let private referenceFree =
    testList "reference-free" [
        testCase "SimPO: -log sigma(beta (avg_c - avg_r) - gamma)" <| fun _ ->
            let sc, cc = [| -3.0; -10.0 |], [| 3.0; 4.0 |]
            let sr, cr = [| -8.0; -2.0 |], [| 4.0; 1.0 |]
            let o = PreferenceOptions(Beta = 2.0)
            let r = PreferenceLosses.SimPO(seqLp sc cc, seqLp sr cr, o)
            // pair 0: avg -1 vs -2 -> 2*1 - 0.5 = 1.5; pair 1: -2.5 vs -2 -> 2*(-0.5) - 0.5 = -1.5
            close 1e-12 (vals r.Losses) [| -logSigma 1.5; -logSigma -1.5 |] "SimPO per pair"
            close 1e-12 (vals r.ChosenRewards) [| -2.0; -5.0 |] "rewards beta * avg"

        testCase "ORPO: NLL_c - lambda log sigma(log odds_c - log odds_r)" <| fun _ ->
            let sc, cc = [| -1.5; -0.003 |], [| 3.0; 3.0 |]
            let sr, cr = [| -6.0; -40.0 |], [| 5.0; 2.0 |]
            let r = PreferenceLosses.Orpo(seqLp sc cc, seqLp sr cr, PreferenceOptions(OrpoLambda = 0.25))
            let logOdds a = a - Math.Log(1.0 - Math.Exp a)
            let want i =
                let ac, ar = sc[i] / cc[i], sr[i] / cr[i]
                -ac - 0.25 * logSigma (logOdds ac - logOdds ar)
            close 1e-10 (vals r.Losses) [| want 0; want 1 |] "ORPO per pair (one near p = 1, one near p = 0)"
            // pair 0 by hand: a_c = -0.5, a_r = -1.2; log odds = -0.5 - ln(1 - e^-0.5) - (-1.2 - ln(1 - e^-1.2)) = 1.27437
            Expect.floatClose Accuracy.medium (want 0) (0.5 - 0.25 * logSigma 1.2743697117) "hand value"

        testCase "log(1 - exp x) is accurate in fp32 near 0 and far below" <| fun _ ->
            let xs = [| -1e-6; -0.3; -0.7; -5.0; -30.0 |]
            let got = vals (PreferenceLosses.Log1mExp(torch.tensor(xs |> Array.map float32)))
            // 1 - e^x by its series near 0 avoids cancellation in the expectation too.
            let want = xs |> Array.map (fun x -> if x > -1e-3 then Math.Log(-x - x * x / 2.0 - x * x * x / 6.0) else Math.Log(1.0 - Math.Exp x))
            close 1e-6 got want "log1mexp"
    ]

let private kto =
    testList "KTO" [
        testCase "desirable 1 - sigma(beta (d - z0)), undesirable 1 - sigma(beta (z0 - d)), weighted" <| fun _ ->
            let pol, refr = [| -2.0; -5.0; -1.0 |], [| -3.0; -4.0; -1.5 |]
            let klP, klR = [| -6.0; -2.0 |], [| -7.0; -2.2 |]          // z0 = mean(1.0, 0.2) = 0.6
            let o = PreferenceOptions(Beta = 0.5, DesirableWeight = 2.0, UndesirableWeight = 0.5)
            let desirable = torch.tensor([| true; false; true |])
            let r = PreferenceLosses.Kto(f64 pol, f64 refr, desirable, f64 klP, f64 klR, o)
            let z0 = 0.6
            let d = Array.map2 (-) pol refr                            // 1, -1, 0.5
            let want = [| 2.0 * (1.0 - sigma (0.5 * (d[0] - z0))); 0.5 * (1.0 - sigma (0.5 * (z0 - d[1]))); 2.0 * (1.0 - sigma (0.5 * (d[2] - z0))) |]
            close 1e-12 (vals r.Losses) want "per-example KTO"
            Expect.floatClose Accuracy.veryHigh (scalar r.Z0) z0 "z0 = mean KL estimate"
            let m = r.Metrics()
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/chosen"]) (0.5 * (d[0] + d[2]) / 2.0) "chosen rewards over desirable"
            Expect.floatClose Accuracy.veryHigh (scalar m.["rewards/rejected"]) (0.5 * d[1]) "rejected rewards over undesirable"

        testCase "z0 is clamped at 0 and is 0 without a KL set" <| fun _ ->
            let desirable = torch.tensor([| true; false |])
            let o = PreferenceOptions()
            let r = PreferenceLosses.Kto(f64 [| -1.0; -1.0 |], f64 [| -2.0; -2.0 |], desirable, f64 [| -5.0 |], f64 [| -4.0 |], o)
            Expect.equal (scalar r.Z0) 0.0 "mean KL -1 clamps to 0"
            let r0 = PreferenceLosses.Kto(f64 [| -1.0; -1.0 |], f64 [| -2.0; -2.0 |], desirable, null, null, o)
            close 1e-12 (vals r0.Losses) [| 1.0 - sigma 0.1; 1.0 - sigma -0.1 |] "z0 = 0 with beta 0.1"

        testCase "z0 is detached: gradient flows through d only" <| fun _ ->
            use pol = torch.tensor([| -2.0; -5.0 |], dtype = torch.float64, requires_grad = true)
            use klP = torch.tensor([| -6.0; -2.0 |], dtype = torch.float64, requires_grad = true)
            let r = PreferenceLosses.Kto(pol, f64 [| -3.0; -4.0 |], torch.tensor([| true; false |]), klP, f64 [| -7.0; -2.2 |], PreferenceOptions(Beta = 0.5))
            r.Losses.sum().backward()
            Expect.isTrue (isNull klP.grad || (vals klP.grad |> Array.forall ((=) 0.0))) "no gradient reaches the KL-estimate inputs"
            // d(1 - sigma(b(d - z0)))/dd = -b s(1-s); d(1 - sigma(b(z0 - d)))/dd = +b s(1-s)
            let s0 = sigma (0.5 * (1.0 - 0.6))
            let s1 = sigma (0.5 * (0.6 - -1.0))
            close 1e-12 (vals pol.grad) [| -0.5 * s0 * (1.0 - s0); 0.5 * s1 * (1.0 - s1) |] "gradient through d"
    ]

let private pointwise =
    testList "point-wise DPO" [
        testCase "binary and continuous labels" <| fun _ ->
            let d = [| 2.0; -1.0; 0.5; 3.0 |]
            let y = [| 1.0; 0.0; 0.3; 0.75 |]
            let got = vals (PreferenceLosses.Pointwise(f64 d, f64 y, 0.5))
            let want = Array.map2 (fun d y -> -y * logSigma (0.5 * d) - (1.0 - y) * logSigma (-0.5 * d)) d y
            close 1e-12 got want "BCE on beta d"
            Expect.floatClose Accuracy.veryHigh got.[0] (Math.Log(1.0 + Math.Exp -1.0)) "y = 1: -log sigma(1)"
            Expect.floatClose Accuracy.veryHigh got.[1] (Math.Log(1.0 + Math.Exp -0.5)) "y = 0: -log sigma(0.5)"
    ]

[<Tests>]
let tests = testList "Align" [ sequenceLogProbs; pairwise; combined; referenceFree; kto; pointwise ]
