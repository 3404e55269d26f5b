namespace Research

open Research.Pipelines

/// Corpora as values: loaded on first use, fingerprinted by content.
module Data =
    /// A text file, a folder of .txt files, or JSONL with a "text" field.
    let file (path: string) = DataSource.FromPath path
    /// Documents made in memory (a function, so nothing is built until a stage needs it).
    let documents (name: string) (make: unit -> Research.Data.Document list) =
        DataSource.FromDocuments(name, fun () -> make () :> _ seq |> Seq.toArray :> _)
    let name (d: DataSource) = d.Name

/// The two seeded text domains the quick start uses (no download).
module World =
    type QuickWorld = { General: DataSource; Finance: DataSource }

    /// General encyclopedia text and finance reports, `size` general documents (half as many finance), seeded.
    let quick (size: int) (seed: int) =
        { General = DataSource.FromDocuments("general", fun () -> Research.Data.Synthetic.QuickWorld.General(size, seed))
          Finance = DataSource.FromDocuments("finance", fun () -> Research.Data.Synthetic.QuickWorld.Finance(max 1 (size / 2), seed)) }
