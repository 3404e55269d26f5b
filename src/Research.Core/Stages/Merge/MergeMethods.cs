using TorchSharp;
using static TorchSharp.torch;

namespace Research.Stages.Merge;

/// <summary>
/// What a rule reads for one tensor: the base (null for linear) and the merged models' tensors, in config order, and
/// every parameter as resolved for this tensor's name and layer position. <see cref="Generators"/> makes one generator
/// per model, seeded from (seed, tensor name, model index), for the randomised rules; the caller disposes them.
/// </summary>
public sealed record MergeInputs(
    Tensor? Base, IReadOnlyList<Tensor> Thetas,
    double[] Weights, double[] Densities, double[] Gammas, double[] Epsilons,
    double Lambda, double T, bool Normalize, RescaleMode Rescale,
    Func<IReadOnlyList<Generator>> Generators)
{
    /// <summary>The base tensor; the registry only calls a rule that needs one with one.</summary>
    public Tensor Theta0 => Base ?? throw new InvalidOperationException("this merge rule needs the base tensor");
}

/// <summary>A numeric merge parameter: its YAML name, whether each model has its own value, and its default.</summary>
public sealed record MergeParameter(string Name, bool PerModel, double? Default, string Meaning);

/// <summary>
/// One merge method, defined once: the name configs use (mergekit's), what it needs (a base, how many models besides
/// it, whether it weighs them), which parameters it reads, its normalize default, its rule as a pure tensor function,
/// and its docs entry (the rule in one line and the paper). Everything else — the YAML reader, the checks, the
/// streaming merge, the pipeline stage, docs/methods/merge.md — reads it from here.
/// </summary>
public sealed record MergeMethodSpec(
    MergeMethod Method, string Name, bool NeedsBase, int MinOthers, int? MaxOthers, bool TakesWeights,
    IReadOnlyList<string> Parameters, IReadOnlyList<string> Required, bool NormalizeByDefault, bool TakesRescale,
    string Rule, string Paper, Func<MergeInputs, Tensor> Apply)
{
    /// <summary>Whether the method reads parameter <paramref name="name"/> (weight, density, lambda, t...).</summary>
    public bool Reads(string name) => Parameters.Contains(name);
}

/// <summary>The registry: every <see cref="MergeMethod"/> with its <see cref="MergeMethodSpec"/>.</summary>
public static class MergeMethods
{
    /// <summary>Every numeric parameter a merge can take, with its default (t has none: slerp requires it).</summary>
    public static readonly IReadOnlyList<MergeParameter> Parameters =
    [
        new("weight", PerModel: true, 1, "the model's weight in the sum"),
        new("density", PerModel: true, 1, "the fraction of a task vector's entries kept, in (0, 1]"),
        new("gamma", PerModel: true, 0.01, "the fraction of largest-magnitude entries dropped as outliers (breadcrumbs)"),
        new("epsilon", PerModel: true, 0.15, "the spread of keep probabilities around density (della)"),
        new("lambda", PerModel: false, 1, "the scale of the summed task vectors"),
        new("t", PerModel: false, null, "the interpolation point between the base (0) and the other model (1)"),
    ];

    /// <summary>In the order of the enum.</summary>
    public static readonly IReadOnlyList<MergeMethodSpec> All =
    [
        new(MergeMethod.Linear, "linear", NeedsBase: false, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight"], [], NormalizeByDefault: true, TakesRescale: false,
            "sum w_i theta_i / sum w_i (model soup)", "Wortsman et al. 2022, arXiv:2203.05482",
            x => MergeRules.Linear(x.Thetas, x.Weights, x.Normalize)),
        new(MergeMethod.Slerp, "slerp", NeedsBase: true, MinOthers: 1, MaxOthers: 1, TakesWeights: false,
            ["t"], ["t"], NormalizeByDefault: false, TakesRescale: false,
            "spherical interpolation of the base and the other model's flattened tensors at t; lerp when |cos| > 0.9995",
            "Shoemake 1985, doi:10.1145/325165.325242",
            x => MergeRules.Slerp(x.Theta0, x.Thetas[0], x.T)),
        new(MergeMethod.TaskArithmetic, "task_arithmetic", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "lambda"], [], NormalizeByDefault: false, TakesRescale: false,
            "theta_0 + lambda sum w_i tau_i", "Ilharco et al. 2023, arXiv:2212.04089",
            x => MergeRules.TaskArithmetic(x.Theta0, x.Thetas, x.Weights, x.Lambda, x.Normalize)),
        new(MergeMethod.Ties, "ties", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "lambda"], [], NormalizeByDefault: true, TakesRescale: false,
            "keep each tau's top-density entries by magnitude; elect s = sign(sum w_i tau_i); keep agreeing entries; divide by the sum of agreeing weights",
            "Yadav et al. 2023, arXiv:2306.01708",
            x => MergeRules.Ties(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Lambda, x.Normalize)),
        new(MergeMethod.DareLinear, "dare_linear", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "lambda"], [], NormalizeByDefault: false, TakesRescale: true,
            "Bernoulli(density) keep mask on each tau, rescaled by 1/density (or L1-norm matching, `rescale: l1`); then task arithmetic",
            "Yu et al. 2023, arXiv:2311.03099",
            x => MergeRules.Dare(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Generators(), ties: false, x.Lambda, x.Normalize, x.Rescale)),
        new(MergeMethod.DareTies, "dare_ties", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "lambda"], [], NormalizeByDefault: false, TakesRescale: true,
            "the DARE mask and rescale, then TIES sign election", "Yu et al. 2023, arXiv:2311.03099",
            x => MergeRules.Dare(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Generators(), ties: true, x.Lambda, x.Normalize, x.Rescale)),
        new(MergeMethod.Breadcrumbs, "breadcrumbs", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "gamma", "lambda"], [], NormalizeByDefault: false, TakesRescale: false,
            "drop each tau's top-gamma largest-magnitude entries, then the smallest, keeping density; then task arithmetic",
            "Davari & Belilovsky 2023, arXiv:2312.06795",
            x => MergeRules.Breadcrumbs(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Gammas, ties: false, x.Lambda, x.Normalize)),
        new(MergeMethod.BreadcrumbsTies, "breadcrumbs_ties", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "gamma", "lambda"], [], NormalizeByDefault: false, TakesRescale: false,
            "the breadcrumbs mask, then TIES sign election", "Davari & Belilovsky 2023, arXiv:2312.06795",
            x => MergeRules.Breadcrumbs(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Gammas, ties: true, x.Lambda, x.Normalize)),
        new(MergeMethod.ModelStock, "model_stock", NeedsBase: true, MinOthers: 2, MaxOthers: null, TakesWeights: false,
            [], [], NormalizeByDefault: false, TakesRescale: false,
            "t = N cos / (1 + (N - 1) cos), cos the mean pairwise cosine of the tau; t mean(theta_i) + (1 - t) theta_0",
            "Jang et al. 2024, arXiv:2403.19522",
            x => MergeRules.ModelStock(x.Theta0, x.Thetas)),
        new(MergeMethod.Della, "della", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "epsilon", "lambda"], [], NormalizeByDefault: true, TakesRescale: true,
            "keep probabilities ranked by magnitude in [density - epsilon, density + epsilon], kept entries rescaled by 1/p; then TIES sign election",
            "Deep et al. 2024, arXiv:2406.11617",
            x => MergeRules.Della(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Epsilons, x.Generators(), ties: true, x.Lambda, x.Normalize, x.Rescale)),
        new(MergeMethod.DellaLinear, "della_linear", NeedsBase: true, MinOthers: 1, MaxOthers: null, TakesWeights: true,
            ["weight", "density", "epsilon", "lambda"], [], NormalizeByDefault: false, TakesRescale: true,
            "the DELLA keep probabilities and rescale, then a plain weighted sum", "Deep et al. 2024, arXiv:2406.11617",
            x => MergeRules.Della(x.Theta0, x.Thetas, x.Weights, x.Densities, x.Epsilons, x.Generators(), ties: false, x.Lambda, x.Normalize, x.Rescale)),
    ];

    static readonly Dictionary<MergeMethod, MergeMethodSpec> ByMethod = All.ToDictionary(s => s.Method);

    /// <summary>The spec of <paramref name="method"/>.</summary>
    public static MergeMethodSpec Of(MergeMethod method) =>
        ByMethod.TryGetValue(method, out var s) ? s : throw new ArgumentOutOfRangeException(nameof(method), method, "no such merge method in the registry");

    /// <summary>The spec named <paramref name="name"/> in a config, or null.</summary>
    public static MergeMethodSpec? Named(string name) => All.FirstOrDefault(s => s.Name == name);

    /// <summary>The default of parameter <paramref name="name"/>.</summary>
    public static double DefaultOf(string name) =>
        Parameters.First(p => p.Name == name).Default ?? throw new InvalidOperationException($"parameter '{name}' has no default");

    /// <summary>The table of docs/methods/merge.md: one row per method (name, parameters, rule, paper); a test checks the page holds it.</summary>
    public static string MarkdownTable()
    {
        var lines = new List<string> { "| method | reads | normalize | rule | paper |", "|---|---|---|---|---|" };
        foreach (var s in All)
        {
            var reads = s.Parameters.Concat(s.TakesRescale ? ["rescale"] : Array.Empty<string>()).ToArray();
            var needs = s.NeedsBase ? $"base + {(s.MaxOthers == s.MinOthers ? $"{s.MinOthers}" : $"{s.MinOthers}+")} model(s)" : "1+ model(s)";
            lines.Add($"| `{s.Name}` | {needs}; {(reads.Length == 0 ? "no parameters" : string.Join(", ", reads))} | {(s.NormalizeByDefault ? "on" : "off")} | {s.Rule.Replace("|", "\\|")} | {s.Paper} |");
        }
        return string.Join("\n", lines) + "\n";
    }
}
