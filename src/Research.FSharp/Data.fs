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

    /// The embedded default world (finance domain + general encyclopedia), written to a folder so stages can read its files.
    type DefaultWorld =
        { World: Research.Data.Synthetic.World
          Files: Research.Data.Synthetic.WorldFiles
          General: DataSource
          Domain: DataSource
          ReadingComprehension: DataSource
          Tapt: DataSource }
        /// {"messages"} JSONL for `tune`.
        member w.Instructions = w.Files.Instructions
        /// {"prompt", "chosen", "rejected"} JSONL for `align`.
        member w.Preferences = w.Files.Preferences
        /// {"prompt", "completion", "label"} JSONL for KTO-style `align`.
        member w.Unpaired = w.Files.Unpaired

    /// The default world of `size` general documents (size / 2 domain documents), seeded, written under `dir`.
    let createIn (dir: string) (size: int) (seed: int) =
        let w = Research.Data.Synthetic.World(size, seed)
        { World = w
          Files = w.Write dir
          General = DataSource.FromDocuments("general", fun () -> w.General)
          Domain = DataSource.FromDocuments("domain", fun () -> w.Domain)
          ReadingComprehension = DataSource.FromDocuments("reading_comprehension", fun () -> w.ReadingComprehension)
          Tapt = DataSource.FromDocuments("tapt", fun () -> w.Tapt) }

    /// The same, written where the C# quick start writes it (a temp folder named by size and seed).
    let create (size: int) (seed: int) =
        createIn (QuickStartOptions(GeneralDocuments = size, Seed = seed).WorldPath) size seed
