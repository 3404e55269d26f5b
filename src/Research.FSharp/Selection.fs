namespace Research

open System
open Research.Data
open Research.Selection
open Research.Laws
open Research.Pipelines
open Research.Stages

/// Data selection and domain mixtures as DSL values: DataSource transforms (DSIR, perplexity filtering),
/// the doremi stage, and modifiers of a multi-domain adapt stage (weights, temperature, DoReMi weights, upsampling).
module Selection =
    /// The `k` documents of `pool` that DSIR picks for `target` (hashed uni+bigrams, importance resampling):
    /// `pool |> Selection.dsir target 200`. Cached as JSONL under runs/selection/.
    let dsir (target: DataSource) (k: int) (pool: DataSource) = SelectedSources.Dsir(target, pool, k)

    /// DSIR with options (buckets, smoothing, seed) and a cache folder.
    let dsirWith (options: DsirOptions) (cacheDir: string) (target: DataSource) (k: int) (pool: DataSource) =
        SelectedSources.Dsir(target, pool, k, options, cacheDir)

    /// The `keep` share of `source` with the lowest perplexity under the checkpoint in `referenceDir`.
    let perplexityFilter (referenceDir: string) (keep: float) (source: DataSource) =
        SelectedSources.PerplexityFiltered(source, IO.Path.GetFullPath referenceDir, keep)

    /// DoReMi: from a reference stage (trained on uniform weights over `domains`), train a proxy with Group DRO and
    /// leave the averaged domain weights in final/domain_weights.json: `reference |> Selection.doremi domains`.
    let doremi (domains: DataSource list) : Step =
        fun reference -> Stage("doremi", DoReMiOptions(), [| reference |], List.toArray domains)

    /// Steps of a doremi stage's proxy training (`Stage.steps` covers the built-in stages only).
    let proxySteps (n: int) (s: Stage) =
        match s.Config with
        | :? DoReMiOptions as o -> s.WithConfig(o.WithTrain(o.Train.WithSteps n))
        | _ -> invalidArg "stage" $"stage '{s.Name}': not a doremi stage"

    /// Continual pretraining over several domains (uniform unless a modifier below sets the weights).
    let adaptDomains (domains: DataSource list) : Step =
        fun parent ->
            Stage("adapt", AdaptOptions(Replay = 0.0, Domains = DomainMixtureOptions()), [| parent |], List.toArray domains)

    let private mixture (f: DomainMixtureOptions -> DomainMixtureOptions) (s: Stage) =
        match s.Config with
        | :? AdaptOptions as o ->
            match o.Domains with
            | null -> invalidArg "stage" $"stage '{s.Name}': an adapt stage without a domain mixture (use Selection.adaptDomains)"
            | m -> s.WithConfig(o.WithDomains(f m))
        | _ -> invalidArg "stage" $"stage '{s.Name}': not a multi-domain adapt stage (use Selection.adaptDomains)"

    /// Static weights, one per domain in order (normalised).
    let weights (ws: float list) = mixture (fun m -> m.WithWeights(List.toArray ws))

    /// Temperature sampling over the domains' training tokens: p ∝ n^(1/T).
    let temperature (t: float) = mixture (fun m -> m.WithTemperature t)

    /// Use the weights a doremi stage learnt (matched by domain name); the doremi stage becomes the second parent.
    let weightsFrom (doremiStage: Stage) (s: Stage) =
        let s = s |> mixture (fun m -> m.WithWeightsFromParent true)
        StageOps.withSecondParent doremiStage s

    /// "Does your data spark joy?": multiply `domain`'s weight by `factor` over the last `fraction` of steps.
    let upsampleLast (domain: string) (fraction: float) (factor: float) =
        mixture (fun m -> m.WithUpsampling(domain, fraction, factor))

    /// Explicit later phases: (start as a fraction of steps, weights); `linear` interpolates between them.
    let phases (linear: bool) (ps: (float * float list) list) =
        mixture (fun m -> m.WithPhases([| for (start, ws) in ps -> MixturePhase(start, List.toArray ws) |]).WithLinear linear)

/// Fitted laws over sweep results: robust least squares in log space, leave-one-out checks, curves to draw.
module Laws =
    /// The D-CPT Law at a fixed model size: L(r, D) = E + B·r^η/D^β + C/(r + ε)^γ, inputs "r" and "D".
    let dcpt = Law.DCpt()

    /// y = E + A / x^α over one input.
    let power (input: string) = Law.Power input

    /// A law of your own: named inputs, parameters as (name, start low, start high, positive), and f θ x.
    let custom (name: string) (inputs: string list) (parameters: (string * float * float * bool) list) (f: float[] -> float[] -> float) =
        Law(name, name, List.toArray inputs, [| for (n, lo, hi, pos) in parameters -> LawParameter(n, lo, hi, pos) |], Func<_, _, _>(f))

    let private toPoints (points: (float list * float) list) = [| for (x, y) in points -> LawPoint(List.toArray x, y) |]

    /// Fit (seeded restarts, Huber δ = 1e-3 in log space).
    let fit (law: Law) (points: (float list * float) list) = LawFit.Fit(law, toPoints points)

    let fitWith (options: LawFitOptions) (law: Law) (points: (float list * float) list) = LawFit.Fit(law, toPoints points, options)

    let predict (fit: LawFitResult) (x: float list) = fit.Predict(List.toArray x)

    /// For each point: fit on the others, predict it, and the error that fit reported.
    let leaveOneOut (law: Law) (points: (float list * float) list) = LawFit.LeaveOneOut(law, toPoints points)

    /// Points from a sweep: x = the sweep parameters named `inputs` (or constants from `fixedInputs` when a name is not
    /// swept), y = evaluation `metric` of suite `suite` after stage `stage`.
    let points (inputs: string list) (stage: string) (suite: string) (metric: string) (r: ExperimentResult) =
        [ for run in r.Runs ->
            let x = inputs |> List.map (fun i ->
                match run.Point.Parameters.TryGetValue i with
                | true, v -> v
                | _ -> invalidArg "inputs" $"sweep point '{run.Point.Label}' has no parameter '{i}'")
            let node = run.Node stage
            match node.Evaluations.TryGetValue suite with
            | true, scores when scores.ContainsKey metric -> x, scores[metric]
            | _ -> invalidArg "metric" $"stage '{stage}' of run {run.RunId} has no evaluation {suite}/{metric}" ]

    /// The fitted curve along one input (the others fixed at `at`), for a figure: (x, y) samples.
    let curve (fit: LawFitResult) (input: int) (at: float list) (from: float) (until: float) (samples: int) =
        [ for struct (x, y) in fit.Curve(input, List.toArray at, from, until, samples) -> x, y ]
