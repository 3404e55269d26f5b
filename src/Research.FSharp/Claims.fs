namespace Research

open Research.Eval
open Research.Pipelines

/// The side of zero a paper's claim puts the paired difference a - b on.
type Direction =
    /// a is claimed to be larger than b.
    | Above
    /// a is claimed to be smaller than b.
    | Below

/// A reproduction's claim judged over seeds: the paired difference a - b, its tests, and whether the 95% t interval
/// lies on the claimed side of zero (held) or not (not reproduced at this scale).
type Verdict =
    { Claim: string
      Difference: string
      Direction: Direction
      Test: PairedTest
      Held: bool }

/// Claims of a reproduction tested over seeds, never read off one seed: each verdict pairs the two arms by seed,
/// reports the mean difference with its 95% t interval, the paired t, Wilcoxon signed-rank and sign-test p-values
/// (two-sided), and holds only when the interval excludes zero on the paper's side. A claim that does not hold is
/// printed as NOT REPRODUCED with its numbers; scripts do not search for seeds that pass.
module Claims =
    /// The values of f per seed over the runs of an experiment that keep pick (a sweep point, usually).
    let perSeed (pick: RunResult -> bool) (f: RunResult -> float) (r: ExperimentResult) : Map<int64, float> =
        r.Runs |> Seq.filter pick |> Seq.map (fun run -> run.Seed, f run) |> Map.ofSeq

    /// The values of f per seed over every run of an experiment (one point: branches or a single pipeline).
    let perSeedAll (f: RunResult -> float) (r: ExperimentResult) = perSeed (fun _ -> true) f r

    /// Mean of the per-seed values with a 95% Student-t interval (one seed: no interval).
    let summary (xs: Map<int64, float>) = Statistics.TInterval(xs |> Map.values |> Array.ofSeq)

    /// Judges a - b paired by seed (the seeds both maps hold); fails naming the claim when fewer than two are shared.
    let paired (claim: string) (difference: string) (direction: Direction) (a: Map<int64, float>) (b: Map<int64, float>) =
        let seeds = Set.intersect (a |> Map.keys |> set) (b |> Map.keys |> set) |> Set.toArray
        if seeds.Length < 2 then
            invalidArg "a" $"claim '{claim}': its arms share {seeds.Length} seed(s); a paired test needs at least 2 (run with --seeds 5)"
        let test = Statistics.Paired([| for s in seeds -> a[s] |], [| for s in seeds -> b[s] |])
        let held =
            test.Difference.HasInterval
            && (match direction with
                | Above -> test.Difference.Lower > 0.0
                | Below -> test.Difference.Upper < 0.0)
        { Claim = claim; Difference = difference; Direction = direction; Test = test; Held = held }

    /// The verdict as one line: "claim: difference +0.12 [+0.05, +0.19] over 5 seeds (paired t p = ..., ...) -> HELD".
    let line (v: Verdict) =
        let t = v.Test
        let side = match v.Direction with Above -> "> 0" | Below -> "< 0"
        sprintf "%s: %s %+.4g [%+.4g, %+.4g] over %d seeds, claimed %s (paired t p = %.4f, Wilcoxon p = %.4f, sign p = %.4f) -> %s"
            v.Claim v.Difference t.MeanDifference t.Difference.Lower t.Difference.Upper t.N side t.TP t.WilcoxonP t.SignP
            (if v.Held then "HELD" else "NOT REPRODUCED")

    /// Prints each verdict's line and returns the verdicts.
    let report (verdicts: Verdict list) =
        for v in verdicts do printfn "%s" (line v)
        verdicts

    /// A table of the verdicts (claim, difference, mean, interval, p-values, verdict) for Tables.save.
    let table (verdicts: Verdict list) =
        { Header = [ "claim"; "difference"; "mean"; "95% t interval"; "paired t p"; "Wilcoxon p"; "verdict" ]
          Rows =
            [ for v in verdicts ->
                [ box v.Claim; box v.Difference; box v.Test.MeanDifference
                  box (sprintf "[%.4g, %.4g]" v.Test.Difference.Lower v.Test.Difference.Upper)
                  box v.Test.TP; box v.Test.WilcoxonP; box (if v.Held then "held" else "not reproduced") ] ] }
