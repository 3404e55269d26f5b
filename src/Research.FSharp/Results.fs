namespace Research

open Deedle
open Research.Pipelines

/// One row of results: a metric of a stage in a run (one sweep point under one seed).
type ResultRow =
    { Run: int64; Point: string; Seed: int64; Stage: string; Kind: string; Status: string; Source: string; Metric: string; Value: float }

/// A metric of a stage at a sweep point, over its seeds: the mean, a 95% Student-t interval (NaN bounds for one seed),
/// the number of seeds and how the interval was made ("mean and 95% t interval over 5 seeds", "1 seed, no interval").
type SummaryRow =
    { Point: string; Stage: string; Source: string; Metric: string; Seeds: int; Mean: float; Lower: float; Upper: float; Interval: string }

/// Results as Deedle frames (run × stage × metric, long format), ready to pivot and plot.
module Results =
    let rows (r: ExperimentResult) =
        [ for run in r.Runs do
            for n in run.Nodes do
                for KeyValue (m, v) in n.Metrics do
                    yield { Run = run.RunId; Point = run.Point.Label; Seed = run.Seed; Stage = n.Name; Kind = n.Kind; Status = n.Status; Source = "train"; Metric = m; Value = v }
                for KeyValue (suite, scores) in n.Evaluations do
                    for KeyValue (m, v) in scores do
                        yield { Run = run.RunId; Point = run.Point.Label; Seed = run.Seed; Stage = n.Name; Kind = n.Kind; Status = n.Status; Source = suite; Metric = m; Value = v } ]

    /// Every metric and evaluation as a frame with columns Run, Point, Seed, Stage, Kind, Status, Source, Metric, Value.
    let frame (r: ExperimentResult) : Frame<int, string> = rows r |> Frame.ofRecords

    /// A metric that measures another's uncertainty (a standard error, an interval's bound): a column, not a result.
    let isUncertainty (metric: string) = metric.EndsWith "_stderr" || metric.EndsWith "_lower" || metric.EndsWith "_upper"

    /// Each (point, stage, source, metric) over its seeds: mean and 95% t interval (what tables and figures show).
    let summarize (rows: ResultRow list) : SummaryRow list =
        rows
        |> List.groupBy (fun x -> x.Point, x.Stage, x.Source, x.Metric)
        |> List.map (fun ((point, stage, source, metric), xs) ->
            // A stage shared by several runs of one seed (cached) counts once per seed.
            let values = xs |> List.distinctBy (fun x -> x.Seed) |> List.sortBy (fun x -> x.Seed) |> List.map (fun x -> x.Value) |> List.toArray
            let finite = values |> Array.forall System.Double.IsFinite
            let ci = if finite then Research.Eval.Statistics.TInterval values else Research.Eval.Interval(nan, nan, nan, values.Length, 0.95, "t")
            { Point = point; Stage = stage; Source = source; Metric = metric; Seeds = values.Length
              Mean = ci.Mean; Lower = ci.Lower; Upper = ci.Upper
              Interval = if finite then ci.Describe() else "not finite in some seed" })

    /// The results of an experiment over seeds (see `summarize`).
    let summary (r: ExperimentResult) = summarize (rows r)

    /// The summary as a frame with columns Point, Stage, Source, Metric, Seeds, Mean, Lower, Upper, Interval.
    let summaryFrame (r: ExperimentResult) : Frame<int, string> = summary r |> Frame.ofRecords

    /// One evaluation metric as a stage × suite table (e.g. perplexity after each stage): the mean over seeds.
    let table (metric: string) (r: ExperimentResult) =
        summary r
        |> List.filter (fun x -> x.Source <> "train" && x.Metric = metric)
        |> List.map (fun x -> (x.Point + " " + x.Stage), x.Source, x.Mean)
        |> Frame.ofValues

    /// A metric's values per seed for a stage at a point (point "-" when the experiment has no sweep).
    let perSeed (source: string) (metric: string) (point: string, stage: string) (r: ExperimentResult) =
        rows r
        |> List.filter (fun x -> x.Point = point && x.Stage = stage && x.Source = source && x.Metric = metric)
        |> List.distinctBy (fun x -> x.Seed)
        |> List.map (fun x -> x.Seed, x.Value)
        |> Map.ofList

    /// Arm a against arm b, each a (point, stage), paired by seed: a - b with its t interval, paired t, Wilcoxon
    /// signed-rank and sign test p-values. Fails naming the arms when they share no seed.
    let compare (source: string) (metric: string) (a: string * string) (b: string * string) (r: ExperimentResult) =
        let xa, xb = perSeed source metric a r, perSeed source metric b r
        let seeds = Set.intersect (xa |> Map.keys |> set) (xb |> Map.keys |> set) |> Set.toList
        if seeds.IsEmpty then
            invalidArg "a" $"compare {source} {metric}: arms {a} ({xa.Count} seeds) and {b} ({xb.Count} seeds) share no seed"
        Research.Eval.Statistics.Paired([| for s in seeds -> xa[s] |], [| for s in seeds -> xb[s] |])

    /// Status of each stage of each run ("done", "cached").
    let statuses (r: ExperimentResult) =
        [ for run in r.Runs do for n in run.Nodes -> run.RunId, n.Name, n.Status ]

    /// Prints a frame as a table (Deedle's formatting).
    let print (frame: Frame<'R, 'C>) = frame.Print()
