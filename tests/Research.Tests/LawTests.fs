module Research.Tests.LawTests

open System
open Expecto
open Research.Data
open Research.Laws

/// D-CPT points on a grid of mixture ratios and token counts, from known parameters, with seeded log-normal noise.
let private dcptPoints (theta: float[]) (noise: float) (seed: int64) =
    let law = Law.DCpt()
    let rng = Rng(seed)
    let gauss () =
        // Box–Muller from the seeded generator
        let u1 = max (rng.NextDouble()) 1e-12
        let u2 = rng.NextDouble()
        sqrt (-2.0 * log u1) * cos (2.0 * Math.PI * u2)
    [| for r in [ 0.1; 0.2; 0.35; 0.5; 0.7; 0.9 ] do
         for d in [ 1e3; 4e3; 1.6e4 ] ->
             LawPoint([| r; d |], law.Evaluate(theta, [| r; d |]) * exp (noise * gauss ())) |]

let private truth = [| 1.8; 20.0; 0.3; 0.5; 0.15; 0.6 |] // E, B, η, β, C, γ

[<Tests>]
let tests =
    testList "Laws" [
        testCase "Huber loss by hand" <| fun _ ->
            Expect.floatClose Accuracy.veryHigh (LawFit.Huber(0.5, 1.0)) 0.125 "inside δ: r²/2"
            Expect.floatClose Accuracy.veryHigh (LawFit.Huber(-3.0, 1.0)) 2.5 "outside δ: δ(|r| − δ/2)"

        testCase "the D-CPT form evaluates as written" <| fun _ ->
            let law = Law.DCpt(0.01)
            // 1.8 + 20·0.5^0.3/1000^0.5 + 0.15/(0.51)^0.6
            let expected = 1.8 + 20.0 * 0.5 ** 0.3 / 1000.0 ** 0.5 + 0.15 / 0.51 ** 0.6
            Expect.floatClose Accuracy.veryHigh (law.Evaluate(truth, [| 0.5; 1000.0 |])) expected "L(0.5, 1000)"
            Expect.equal law.Inputs [| "r"; "D" |] "inputs"
            Expect.equal [ for p in law.Parameters -> p.Name ] [ "E"; "B"; "eta"; "beta"; "C"; "gamma" ] "parameter names"

        testCase "recovers known parameters from noise-free points" <| fun _ ->
            let fit = LawFit.Fit(Law.DCpt(), dcptPoints truth 0.0 1L, LawFitOptions(Seed = 3))
            for (name, value) in Seq.zip [ "E"; "B"; "eta"; "beta"; "C"; "gamma" ] truth do
                Expect.floatClose { absolute = 1e-3; relative = 2e-2 } fit.Parameters[name] value $"parameter {name}"
            Expect.isLessThan fit.RmseLog 1e-5 "exact data: no residual"

        testCase "same seed, same fit" <| fun _ ->
            let pts = dcptPoints truth 0.01 2L
            let a = LawFit.Fit(Law.DCpt(), pts, LawFitOptions(Seed = 5))
            let b = LawFit.Fit(Law.DCpt(), pts, LawFitOptions(Seed = 5))
            Expect.equal a.Theta b.Theta "identical parameters"

        testCase "a law fitted on all but one point predicts the held-out point within the error it reports" <| fun _ ->
            let pts = dcptPoints truth 0.01 4L
            let loo = LawFit.LeaveOneOut(Law.DCpt(), pts, LawFitOptions(Seed = 1, Restarts = 8))
            let within = loo |> Seq.filter (fun r -> r.Within) |> Seq.length
            printfn "leave-one-out: %d of %d within the reported error; mean |log error| %.4f, mean reported %.4f"
                within loo.Count (loo |> Seq.averageBy (fun r -> r.LogError)) (loo |> Seq.averageBy (fun r -> r.ReportedError))
            Expect.isGreaterThanOrEqual (float within / float loo.Count) 0.85 "at least 85% of held-out points inside the reported (≈95%) band"
            let last = loo[loo.Count - 1]
            Expect.isTrue last.Within $"the last sweep point: |log error| {last.LogError:F4} ≤ reported {last.ReportedError:F4}"
            Expect.isLessThan (loo |> Seq.averageBy (fun r -> r.ReportedError)) 0.05 "the reported error is about 2σ = 0.02, not vacuous"

        testCase "Huber in log space resists one outlier that pulls least squares away" <| fun _ ->
            let law = Law.Power "D"
            let t = [| 2.0; 30.0; 0.5 |]
            let pts = [| for d in [ 100.0; 200.0; 400.0; 800.0; 1600.0; 3200.0; 6400.0; 12800.0 ] -> LawPoint([| d |], law.Evaluate(t, [| d |])) |]
            pts[5] <- LawPoint(pts[5].X, pts[5].Y * 1.5)
            let huber = LawFit.Fit(law, pts, LawFitOptions(Seed = 2))
            let squares = LawFit.Fit(law, pts, LawFitOptions(Seed = 2, HuberDelta = 1e9))
            let err (f: LawFitResult) = abs (f.Parameters["E"] - 2.0)
            Expect.isLessThan (err huber) 0.01 "Huber: E recovered despite the outlier"
            Expect.isGreaterThan (err squares) (10.0 * err huber) "least squares: E pulled by the outlier"

        testCase "a user-supplied form with named parameters" <| fun _ ->
            let law =
                Law("exp-decay", "y = a + b·exp(−k·x)", [| "x" |],
                    [| LawParameter("a", 0.1, 2.0, true); LawParameter("b", 0.1, 5.0, true); LawParameter("k", 0.01, 1.0, true) |],
                    Func<float[], float[], float>(fun t x -> t[0] + t[1] * exp (-t[2] * x[0])))
            let pts = [| for x in 0.0 .. 1.0 .. 10.0 -> LawPoint([| x |], 0.5 + 2.0 * exp (-0.3 * x)) |]
            let fit = LawFit.Fit(law, pts)
            Expect.floatClose { absolute = 1e-4; relative = 1e-3 } fit.Parameters["k"] 0.3 "k"
            let curve = fit.Curve(0, [| 0.0 |], 0.0, 10.0, 11)
            Expect.equal curve.Count 11 "curve samples for a figure"
            let struct (x5, y5) = curve[5]
            Expect.floatClose { absolute = 1e-4; relative = 1e-4 } y5 (0.5 + 2.0 * exp (-1.5)) $"curve at x = {x5}"

        testCase "errors name the point and the law" <| fun _ ->
            Research.Tests.TestUtil.throwsWith<ArgumentException>
                (fun () -> LawFit.Fit(Law.Power(), [| LawPoint([| 1.0 |], 1.0); LawPoint([| 2.0 |], -1.0) |]) |> ignore)
                [ "law 'power'"; "point 1"; "> 0" ] "negative loss"
    ]
