namespace Research.Pipelines;

/// <summary>
/// One point of a sweep: its parameter values, the pipeline (its final stages) built from them, and the seed it runs
/// under (null: the experiment's). <see cref="Experiment.WithSeeds"/> repeats every point once per seed; the label
/// names the parameters only, so the runs of one point under several seeds share it and aggregate over seeds.
/// </summary>
public sealed record SweepPoint(IReadOnlyDictionary<string, double> Parameters, IReadOnlyList<Stage> Leaves, long? Seed = null)
{
    public string Label => Parameters.Count == 0 ? "-" : string.Join(",", Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value:R}"));
}

/// <summary>
/// An experiment: a name, a seed, the pipeline's final stages for each sweep point, and the suites
/// evaluated after the chosen stages (all stages when <see cref="EvaluateAfter"/> is null).
/// </summary>
public sealed record Experiment(string Name, long Seed, IReadOnlyList<SweepPoint> Points, IReadOnlyList<ISuite> Suites, IReadOnlySet<string>? EvaluateAfter = null)
{
    public static Experiment Create(string name, params Stage[] leaves) =>
        new(name, 1234, [new SweepPoint(new Dictionary<string, double>(), leaves)], []);

    /// <summary>A grid over named parameters; <paramref name="build"/> makes the pipeline's final stages for one point.</summary>
    public static Experiment Sweep(string name, IReadOnlyList<(string Name, double[] Values)> grid, Func<IReadOnlyDictionary<string, double>, IReadOnlyList<Stage>> build)
    {
        IEnumerable<Dictionary<string, double>> points = [new Dictionary<string, double>()];
        foreach (var (param, values) in grid)
        {
            if (values.Length == 0) throw new ArgumentException($"sweep '{name}': parameter '{param}' has no values");
            points = points.SelectMany(p => values.Select(v => new Dictionary<string, double>(p) { [param] = v })).ToArray();
        }
        return new(name, 1234, points.Select(p => new SweepPoint(p, build(p))).ToArray(), []);
    }

    public Experiment WithSeed(long seed) => this with { Seed = seed };

    /// <summary>
    /// Every point once per seed (seeds as a dimension of the sweep): each (point, seed) is one run whose stages are keyed
    /// by that seed, so the whole pipeline is trained (and cached) once per seed. The first seed becomes the experiment's.
    /// Results, tables and figures aggregate over the seeds of a point.
    /// </summary>
    public Experiment WithSeeds(IEnumerable<long> seeds)
    {
        var list = seeds.ToArray();
        if (list.Length == 0) throw new ArgumentException($"experiment '{Name}': seeds needs at least one seed");
        if (list.Distinct().Count() != list.Length) throw new ArgumentException($"experiment '{Name}': seeds [{string.Join(", ", list)}] repeat a seed; each seed runs once");
        if (Points.Any(p => p.Seed is not null)) throw new ArgumentException($"experiment '{Name}' already has seeds; give all of them in one call");
        return this with { Seed = list[0], Points = Points.SelectMany(p => list.Select(seed => p with { Seed = seed })).ToArray() };
    }

    /// <summary>The seed point <paramref name="point"/> runs under.</summary>
    public long SeedOf(SweepPoint point) => point.Seed ?? Seed;
    public Experiment Evaluate(params ISuite[] suites) => this with { Suites = Suites.Concat(suites).ToArray() };
    public Experiment EvaluateOnlyAfter(params string[] stageNames) => this with { EvaluateAfter = stageNames.ToHashSet() };
}
