namespace Research

open Deedle
open Research.Pipelines

/// One row of results: a metric of a stage in a run.
type ResultRow =
    { Run: int64; Point: string; Stage: string; Kind: string; Status: string; Source: string; Metric: string; Value: float }

/// Results as Deedle frames (run × stage × metric, long format), ready to pivot and plot.
module Results =
    let rows (r: ExperimentResult) =
        [ for run in r.Runs do
            for n in run.Nodes do
                for KeyValue (m, v) in n.Metrics do
                    yield { Run = run.RunId; Point = run.Point.Label; Stage = n.Name; Kind = n.Kind; Status = n.Status; Source = "train"; Metric = m; Value = v }
                for KeyValue (suite, scores) in n.Evaluations do
                    for KeyValue (m, v) in scores do
                        yield { Run = run.RunId; Point = run.Point.Label; Stage = n.Name; Kind = n.Kind; Status = n.Status; Source = suite; Metric = m; Value = v } ]

    /// Every metric and evaluation as a frame with columns Run, Point, Stage, Kind, Status, Source, Metric, Value.
    let frame (r: ExperimentResult) : Frame<int, string> = rows r |> Frame.ofRecords

    /// One evaluation metric as a stage × suite table for one run (e.g. perplexity after each stage).
    let table (metric: string) (r: ExperimentResult) =
        rows r
        |> List.filter (fun x -> x.Source <> "train" && x.Metric = metric)
        |> List.map (fun x -> (x.Point + " " + x.Stage), x.Source, x.Value)
        |> Frame.ofValues

    /// Status of each stage of each run ("done", "cached").
    let statuses (r: ExperimentResult) =
        [ for run in r.Runs do for n in run.Nodes -> run.RunId, n.Name, n.Status ]

    /// Prints a frame as a table (Deedle's formatting).
    let print (frame: Frame<'R, 'C>) = frame.Print()
