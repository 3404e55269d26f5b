namespace Research

open System
open Research.Pipelines

/// Experiments as values: a start, a recipe, suites, a sweep and a seed; `run` executes them (cached, resumable, recorded).
module Experiment =
    /// The experiment of a pipeline: `recipe` applied to `start`, which may return one stage or several (branches).
    let create (name: string) (start: Stage) (recipe: Stage -> Stage) = Experiment.Create(name, recipe start)

    /// The same with branches: the recipe returns several final stages.
    let createBranches (name: string) (start: Stage) (recipe: Stage -> Stage list) = Experiment.Create(name, recipe start |> List.toArray)

    let seed (s: int64) (e: Experiment) = e.WithSeed s

    /// Seeds as a dimension: every point runs once per seed (`Experiment.seeds [ 1L .. 5L ]`), cached per seed; results
    /// carry the seed, and `Results.summary`, tables and figures give the mean and a 95% interval over seeds.
    let seeds (seeds: int64 list) (e: Experiment) = e.WithSeeds seeds

    /// Perplexity and bits per byte on the held-out documents of a corpus after every stage.
    let perplexity (name: string) (data: DataSource) = PerplexitySuite(name, data, 0.04, 0L, 128) :> ISuite

    /// Suites evaluated after every stage (the held-out split follows the experiment's seed).
    let evaluateEach (suites: (int64 -> ISuite) list) (e: Experiment) = e.Evaluate(suites |> List.map (fun s -> s e.Seed) |> List.toArray)

    /// Perplexity suite bound to the experiment's seed, for `evaluateEach`.
    let heldOutPerplexity (data: DataSource) (seed: int64) = PerplexitySuite(data.Name, data, 0.04, seed, 128) :> ISuite

    /// Multiple-choice suite from JSONL (question, choices, answer), scored as lm-evaluation-harness does
    /// (acc, acc_norm), with k seeded few-shot examples drawn from the same file (never the item itself).
    let multipleChoice (name: string) (jsonl: string) (fewShot: int) (seed: int64) =
        McSuite(name, System.IO.Path.GetFullPath jsonl, fewShot, null, seed) :> ISuite

    /// Evaluate only after the named stages.
    let evaluateAfter (stageNames: string list) (e: Experiment) = e.EvaluateOnlyAfter(List.toArray stageNames)

    /// A sweep written over typed values, as a list comprehension of (parameters, the point's pipeline):
    /// `Experiment.points "replay" [ for r in [ 0.0; 0.1; 0.25 ] -> [ "replay", r ], start |> adaptFor r ]`.
    /// One experiment: one run per point (one Slurm array element with `research run --on slurm`), the parameters label
    /// the point in results and figures, and stages the points share (same key) run once.
    let points (name: string) (points: ((string * float) list * Stage) list) : Experiment =
        if List.isEmpty points then invalidArg "points" $"experiment '{name}': a sweep needs at least one point"
        let labels = points |> List.map (fun (ps, _) -> ps |> List.sort)
        match labels |> List.countBy id |> List.tryFind (fun (_, n) -> n > 1) with
        | Some (ps, _) -> invalidArg "points" $"experiment '{name}': two points have the same parameters {ps}; each point needs its own"
        | None -> ()
        Experiment(name, 1234L, [| for ps, leaf in points -> SweepPoint(readOnlyDict ps, [| leaf |]) |], [||])

    /// Workspace: RESEARCH_WORKSPACE, else ./runs.
    let defaultWorkspace () =
        match Environment.GetEnvironmentVariable "RESEARCH_WORKSPACE" with
        | null | "" -> IO.Path.GetFullPath "runs"
        | w -> w

    /// Runs every sweep point in `workspace`, reusing finished stages and resuming interrupted ones.
    /// Under `research run --on slurm` the sweep is submitted as one Slurm job array instead (one element per
    /// point, the same workspace); under `research run --point K` only point K runs.
    let runIn (workspace: string) (e: Experiment) =
        Runtime.init ()
        Executor(ExecutorOptions.ForWorkspace workspace).Run e

    let run (e: Experiment) = runIn (defaultWorkspace ()) e
