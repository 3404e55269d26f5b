namespace Research.Pipelines;

/// <summary>One point of a sweep: its parameter values and the pipeline (its final stages) built from them.</summary>
public sealed record SweepPoint(IReadOnlyDictionary<string, double> Parameters, IReadOnlyList<Stage> Leaves)
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
    public Experiment Evaluate(params ISuite[] suites) => this with { Suites = Suites.Concat(suites).ToArray() };
    public Experiment EvaluateOnlyAfter(params string[] stageNames) => this with { EvaluateAfter = stageNames.ToHashSet() };
}
