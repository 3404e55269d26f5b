using Research.Stages.Merge;

namespace Research.Stages;

/// <summary>
/// merge as a pipeline stage: parent 0 is the base (for every method but linear, whose inputs are all
/// parents), the other parents are the models merged into it. Values left null take the method's
/// defaults (see <see cref="MergeConfig"/>).
/// </summary>
public sealed partial record MergeStageOptions
{
    public MergeMethod Method { get; init; } = MergeMethod.TaskArithmetic;
    /// <summary>One weight per merged parent (after the base), or null for 1 each.</summary>
    public double[]? Weights { get; init; }
    public double? Density { get; init; }
    public double? Lambda { get; init; }
    /// <summary>SLERP's interpolation point.</summary>
    public double? T { get; init; }
    public double? Gamma { get; init; }
    public double? Epsilon { get; init; }
    public bool? Normalize { get; init; }
    public RescaleMode? Rescale { get; init; }

    /// <summary>The streaming merge's config for these parent checkpoints.</summary>
    public MergeConfig ToConfig(IReadOnlyList<string> parents, long seed)
    {
        var spec = MergeMethods.Of(Method);
        var needsBase = spec.NeedsBase;
        if (parents.Count < (needsBase ? 2 : 1))
            throw new ArgumentException($"merge ({spec.Name}): needs {(needsBase ? "a base and at least one other model" : "at least one model")}, got {parents.Count} parent(s)");
        var merged = needsBase ? parents.Skip(1).ToArray() : parents.ToArray();
        if (Weights is not null && Weights.Length != merged.Length)
            throw new ArgumentException($"merge: {Weights.Length} weights for {merged.Length} merged models");
        var globals = new Dictionary<string, ParamSetting>();
        void Put(string name, double? v) { if (v is { } x) globals[name] = ParamSetting.Constant(x); }
        Put("density", Density); Put("lambda", Lambda); Put("t", T); Put("gamma", Gamma); Put("epsilon", Epsilon);
        return new MergeConfig
        {
            Method = Method,
            BaseModel = needsBase ? parents[0] : null,
            Models = merged.Select((p, i) => new MergeModel(p, new Dictionary<string, ParamSetting> { ["weight"] = ParamSetting.Constant(Weights?[i] ?? 1.0) })).ToArray(),
            Parameters = globals,
            Normalize = Normalize,
            Rescale = Rescale,
            Seed = seed,
        };
    }
}

public sealed class MergeExecutor : IStageExecutor
{
    public string Kind => "merge";
    public Type Options => typeof(MergeStageOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var report = StreamingMerge.Run(((MergeStageOptions)config).ToConfig(ctx.Parents, ctx.Seed), ctx.FinalCheckpoint, log: ctx.Log.WriteLine);
        return new Dictionary<string, double> { ["tensors"] = report.Tensors, ["shards"] = report.Shards };
    }
}
