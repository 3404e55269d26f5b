namespace Research

open Research.Runs
open Research.Pipelines

/// Provenance manifests of exports (docs/provenance.md): build one from what a figure or table was made of and pass it
/// to Figures.saveWith / Tables.saveWith; Figures.save and Tables.save write one that names no runs.
module Provenance =
    /// The manifest of exports made from this result: its runs, seeds and stages (with their key ingredients), the git
    /// commit of the current directory's repository, the framework version and the time.
    let ofResult (result: ExperimentResult) : Manifest = Manifests.Of result

    /// The manifest of exports made from these runs of a store.
    let ofRuns (store: RunStore) (runs: RunRecord seq) : Manifest = Manifests.Of(store, runs)

    /// The manifest of exports made from every run of a store.
    let ofStore (store: RunStore) : Manifest = Manifests.Of store

    /// A manifest naming no runs (commit, version and time only): for figures of data that did not come from runs.
    let here () : Manifest = Manifest.Here()

    /// The manifest of an exported file (its FILE.provenance.json, else the one inside it), if it has one.
    let read (path: string) : Manifest option = ManifestFiles.Read path |> Option.ofObj

    /// Per stage of the manifest: would this build's code (and the recorded data) produce it again? ("same" / "changed" / "unknown").
    let check (manifest: Manifest) : StageVerdict list = ProvenanceCheck.Check manifest |> List.ofSeq
