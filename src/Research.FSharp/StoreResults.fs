namespace Research

open Deedle
open Research.Runs

/// Results as Deedle frames read straight from a run store (SQLite or PostgreSQL), not from an ExperimentResult or
/// from files beside it: the rows of Results.frame (ResultRow: Run, Point, Seed, Stage, Kind, Status, Source, Metric,
/// Value). Source is a suite's name for evaluations, and for training metrics the kind of metrics.jsonl line the store
/// recorded ("train" or "val"), with the metric's last value (docs/provenance.md).
module StoreResults =
    /// The last value of each (kind, name) of a node's recorded metrics, in first-seen order.
    let private finals (store: RunStore) (key: string) =
        store.Metrics key
        |> Seq.groupBy (fun m -> m.Kind, m.Name)
        |> Seq.map (fun ((kind, name), ms) -> kind, name, (ms |> Seq.maxBy (fun m -> m.Step)).Value)
        |> List.ofSeq

    /// Every run's stages' final metrics and evaluations, run by run, stage by stage (metrics, then evaluations).
    let rows (store: RunStore) =
        [ for run in store.Runs() do
            let evaluations = store.Evaluations run.Id |> Seq.groupBy (fun e -> e.NodeKey) |> dict
            for n in store.Nodes run.Id do
                let row source metric value =
                    { Run = run.Id; Point = run.Point; Stage = n.Name; Kind = n.Kind; Status = n.Status; Source = source
                      Metric = metric; Value = value; Seed = run.Seed }
                for kind, name, v in finals store n.Key do
                    yield row kind name v
                match evaluations.TryGetValue n.Key with
                | true, es -> for e in es do yield row e.Suite e.Metric e.Value
                | _ -> () ]

    /// Every metric and evaluation of the store as a frame (columns of Results.frame, and Seed).
    let frame (store: RunStore) : Frame<int, string> = rows store |> Frame.ofRecords

    /// The frame of the workspace's store ($RESEARCH_STORE when set, else the workspace's research.db).
    let fromWorkspace (workspace: string) =
        use store = new RunStore(workspace)
        frame store

    /// The frame of a PostgreSQL store (Npgsql keywords or a postgresql:// URI).
    let fromPostgres (connection: string) =
        use store = new RunStore(".", connection)
        frame store

    /// Only the rows of one experiment's runs.
    let ofExperiment (experiment: string) (store: RunStore) =
        let runs = store.Runs() |> Seq.filter (fun r -> r.Experiment = experiment) |> Seq.map (fun r -> r.Id) |> Set.ofSeq
        rows store |> List.filter (fun r -> runs.Contains r.Run) |> Frame.ofRecords
