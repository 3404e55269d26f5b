/// The statistics results are reported with, against hand-computed values (closed forms where they exist, the
/// textbook t table, exact enumerations of the signed-rank and sign tests).
module Research.Tests.StatisticsTests

open Expecto
open Research.Eval

let private close (tol: float) (actual: float) (expected: float) (what: string) =
    Expect.isTrue (abs (actual - expected) <= tol) $"{what}: {actual} vs {expected}"

[<Tests>]
let tests =
    testList "Statistics" [
        testCase "Student t tail matches the closed forms for 1 and 2 degrees of freedom" <| fun _ ->
            for t in [ 0.3; 1.0; 2.0; 7.5 ] do
                close 1e-12 (Statistics.StudentTwoSidedP(t, 1.0)) (1.0 - 2.0 / System.Math.PI * atan t) $"df 1, t {t}"
                close 1e-12 (Statistics.StudentTwoSidedP(t, 2.0)) (1.0 - t / sqrt (2.0 + t * t)) $"df 2, t {t}"
            // df 10 at t = 2: 0.0733880348 by numerical integration of the density.
            close 1e-9 (Statistics.StudentTwoSidedP(2.0, 10.0)) 0.0733880348 "df 10, t 2"

        testCase "Student t quantiles equal the table" <| fun _ ->
            for df, q in [ 1.0, 12.7062047362; 2.0, 4.3026527297; 4.0, 2.7764451052; 9.0, 2.2621571628; 29.0, 2.0452296421 ] do
                close 1e-8 (Statistics.StudentQuantile(0.975, df)) q $"t 0.975, df {df}"
            close 1e-12 (Statistics.StudentQuantile(0.5, 3.0)) 0.0 "median"
            close 1e-8 (Statistics.StudentQuantile(0.025, 4.0)) -2.7764451052 "lower tail"

        testCase "a t interval over five seeds, and one seed has none" <| fun _ ->
            // mean 3, s = sqrt 2.5, se = sqrt 0.5, half-width 2.7764451052 sqrt 0.5 = 1.9632432.
            let ci = Statistics.TInterval [| 1.0; 2.0; 3.0; 4.0; 5.0 |]
            close 1e-12 ci.Mean 3.0 "mean"
            close 1e-7 ci.Lower (3.0 - 2.7764451052 * sqrt 0.5) "lower"
            close 1e-7 ci.Upper (3.0 + 2.7764451052 * sqrt 0.5) "upper"
            Expect.equal (ci.N, ci.Method) (5, "t") "n and method"
            Expect.equal (ci.Describe()) "mean and 95% t interval over 5 seeds" "caption"
            let one = Statistics.TInterval [| 0.7 |]
            Expect.isFalse one.HasInterval "one seed: no interval"
            Expect.equal (one.Describe()) "1 seed, no interval" "labelled"
            Expect.throwsT<System.ArgumentException> (fun () -> Statistics.TInterval [| 1.0; nan |] |> ignore) "NaN is refused"

        testCase "paired t, Wilcoxon and sign tests on fixed numbers" <| fun _ ->
            // d = [1, 1, 2, 1, 2]: mean 1.4, s^2 = 0.3, se = sqrt 0.06, t = 5.7154761, df 4, p = 0.0046358394 (numerical
            // integration). Every d > 0: W+ is the largest of 2^5 sums, p = 2/32; the sign test gives 2/32 too.
            let p = Statistics.Paired([| 2.0; 4.0; 6.0; 8.0; 10.0 |], [| 1.0; 3.0; 4.0; 7.0; 8.0 |])
            close 1e-12 p.MeanDifference 1.4 "mean difference"
            close 1e-6 p.T 5.7154761 "t"
            close 1e-9 p.TP 0.0046358394 "paired t p"
            close 1e-12 p.WilcoxonP 0.0625 "signed-rank p (ties in |d|)"
            close 1e-12 p.SignP 0.0625 "sign p"
            close 1e-6 p.Difference.Lower (1.4 - 2.7764451052 * sqrt 0.06) "interval of the difference"
            Expect.isFalse (p.Greater 0.05) "the signed-rank test cannot reach 0.05 with 5 seeds"
            Expect.isTrue (p.Greater 0.07) "both below 0.07"

        testCase "Wilcoxon signed-rank counts the exact distribution" <| fun _ ->
            // d = [3, -1, 2, 4, -5]: W+ = 3 + 2 + 4 = 9; 13 of the 32 subsets of {1..5} sum to <= 6 (= P(W+ >= 9)): p = 26/32.
            close 1e-12 (Statistics.WilcoxonSignedRankP [| 3.0; -1.0; 2.0; 4.0; -5.0 |]) (26.0 / 32.0) "mixed signs"
            close 1e-12 (Statistics.WilcoxonSignedRankP [| 0.0; 0.0 |]) 1.0 "all zero"
            // Six positive of seven, sign test: 2 (1 + 7) / 128.
            close 1e-12 (Statistics.SignTestP [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0; -1.0 |]) (16.0 / 128.0) "sign test"

        testCase "bootstrap: fixed seed, fixed interval; two points span [0, 1]" <| fun _ ->
            // Resample means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% quantiles are 0 and 1.
            let a = Statistics.Bootstrap([| 0.0; 1.0 |], 7L, 2000)
            Expect.equal (a.Lower, a.Upper, a.Mean) (0.0, 1.0, 0.5) "percentiles"
            let b = Statistics.Bootstrap([| 0.2; 0.9; 0.4; 0.4; 0.7 |], 11L)
            Expect.equal b (Statistics.Bootstrap([| 0.2; 0.9; 0.4; 0.4; 0.7 |], 11L)) "same seed, same interval"
            Expect.isTrue (b.Lower < b.Mean && b.Mean < b.Upper && b.Lower >= 0.2 && b.Upper <= 0.9) "inside the data's range"
            let c = Statistics.Bootstrap([| 2.0; 2.0; 2.0 |], 1L)
            Expect.equal (c.Lower, c.Upper) (2.0, 2.0) "constant data"

        testCase "figures over seeds draw error bars to the interval and say how many seeds" <| fun _ ->
            let row stage source mean lower upper interval =
                ({ Point = "-"; Stage = stage; Source = source; Metric = "acc"; Seeds = 5; Mean = mean; Lower = lower; Upper = upper; Interval = interval } : Research.SummaryRow)
            let chart =
                Research.Figures.capabilityByStageOverSeeds "Accuracy" "acc"
                    [ row "base" "finance" 0.5 0.4 0.7 "mean and 95% t interval over 5 seeds"; row "tuned" "finance" 0.8 0.75 0.85 "mean and 95% t interval over 5 seeds" ]
            let json = Plotly.NET.GenericChart.toFigureJson chart |> Newtonsoft.Json.Linq.JObject.Parse
            let err = json.["data"].[0].["error_y"]
            Expect.sequenceEqual [ for v in err.["array"] -> float v ] [ 0.7 - 0.5; 0.85 - 0.8 ] "up to the upper bound"
            Expect.sequenceEqual [ for v in err.["arrayminus"] -> float v ] [ 0.5 - 0.4; 0.8 - 0.75 ] "down to the lower bound"
            Expect.stringContains (string json.["layout"].["title"].["text"]) "over 5 seeds" "the title says over what"
            let one = Research.Figures.sweepOverSeeds "Sweep" "replay" "ppl" "1 seed, no interval" [ "finance", [ 0.0, 3.0, nan, nan; 0.1, 2.5, nan, nan ] ]
            let j1 = Plotly.NET.GenericChart.toFigureJson one |> Newtonsoft.Json.Linq.JObject.Parse
            Expect.sequenceEqual [ for v in j1.["data"].[0].["error_y"].["array"] -> float v ] [ 0.0; 0.0 ] "no bar for one seed"

        testCase "standard error of 0/1 scores is sqrt(p (1 - p) / (n - 1))" <| fun _ ->
            close 1e-12 (Statistics.StandardError [| 1.0; 0.0; 1.0; 1.0 |]) (sqrt (0.75 * 0.25 / 3.0)) "p = 0.75, n = 4"
            close 1e-12 (Statistics.Quantile([| 1.0; 2.0; 3.0; 4.0 |], 0.5)) 2.5 "median interpolates"
    ]
