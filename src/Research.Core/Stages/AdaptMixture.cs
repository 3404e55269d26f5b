using Research.Data;
using Research.Selection;
using Research.Models;
using Research.Training;

namespace Research.Stages;

/// <summary>
/// adapt over several domains: every data input is a domain, drawn with base weights from one of
/// <see cref="Weights"/> (static), <see cref="Temperature"/> (p ∝ tokens^(1/T)) or <see cref="WeightsFromParent"/>
/// (a doremi stage's domain_weights.json, parent 2); uniform when none is set. The base weights can change during
/// training: explicit <see cref="Phases"/>, or <see cref="UpsampleDomain"/> × <see cref="UpsampleFactor"/> over the
/// last <see cref="UpsampleLast"/> of steps. The whole mixture enters the stage key (it is part of the config).
/// </summary>
public sealed partial record DomainMixtureOptions
{
    /// <summary>One weight per data input, in order (normalised). Empty = not static.</summary>
    public double[] Weights { get; init; } = [];
    /// <summary>&gt; 0: temperature sampling over the inputs' training tokens.</summary>
    public double Temperature { get; init; } = 0;
    /// <summary>Read the weights from parent 2's final/domain_weights.json (domains matched by data input name).</summary>
    public bool WeightsFromParent { get; init; } = false;
    /// <summary>Later phases (start as a fraction of steps, weights per input); the base weights are phase 0.</summary>
    public MixturePhase[] Phases { get; init; } = [];
    /// <summary>Interpolate linearly between phases (in ten constant pieces) instead of switching.</summary>
    public bool Linear { get; init; } = false;
    /// <summary>Name of the data input to upsample at the end of training ("Does your data spark joy?").</summary>
    public string? UpsampleDomain { get; init; }
    /// <summary>Share of the final steps over which <see cref="UpsampleDomain"/> is upsampled (0.1 = last 10%).</summary>
    public double UpsampleLast { get; init; } = 0.1;
    /// <summary>Multiplier of <see cref="UpsampleDomain"/>'s weight (before renormalising) in the final steps.</summary>
    public double UpsampleFactor { get; init; } = 1;
}

public static class AdaptMixture
{
    /// <summary>Base weights for the named domains: static, temperature, from a weights file, or uniform.</summary>
    public static double[] BaseWeights(DomainMixtureOptions m, IReadOnlyList<string> names, IReadOnlyList<TokenBlocks> blocks, string? weightsFile)
    {
        var set = (m.Weights.Length > 0 ? 1 : 0) + (m.Temperature > 0 ? 1 : 0) + (m.WeightsFromParent ? 1 : 0);
        if (set > 1) throw new ArgumentException("adapt mixture: set only one of Weights, Temperature and WeightsFromParent");
        if (m.Weights.Length > 0)
        {
            if (m.Weights.Length != names.Count)
                throw new ArgumentException($"adapt mixture: {m.Weights.Length} weights for {names.Count} data inputs ({string.Join(", ", names)})");
            return DomainWeights.Static(names, m.Weights).Weights;
        }
        if (m.Temperature > 0) return DomainWeights.Temperature(names, blocks.Select(b => (double)b.TotalTokens).ToArray(), m.Temperature).Weights;
        if (m.WeightsFromParent)
        {
            if (weightsFile is null) throw new ArgumentException("adapt mixture: WeightsFromParent needs a second parent (a doremi stage)");
            var w = DomainWeights.Load(weightsFile);
            return names.Select(n => Array.IndexOf(w.Domains, n) is var i and >= 0 ? w.Weights[i]
                : throw new ArgumentException($"adapt mixture: {weightsFile} has no weight for data input '{n}' (it has {string.Join(", ", w.Domains)})")).ToArray();
        }
        return DomainWeights.Uniform(names).Weights;
    }

    /// <summary>The schedule: base weights, then the explicit phases or the final upsampling.</summary>
    public static MixtureSchedule Schedule(DomainMixtureOptions m, IReadOnlyList<string> names, double[] baseWeights)
    {
        if (m.UpsampleDomain is { } d && m.UpsampleFactor != 1)
        {
            if (m.Phases.Length > 0) throw new ArgumentException("adapt mixture: use either Phases or UpsampleDomain, not both");
            var i = names.ToList().IndexOf(d);
            if (i < 0) throw new ArgumentException($"adapt mixture: cannot upsample '{d}': data inputs are {string.Join(", ", names)}");
            return MixtureSchedule.Upsample(baseWeights, i, m.UpsampleLast, m.UpsampleFactor) with { Linear = m.Linear };
        }
        return new MixtureSchedule([new MixturePhase(0, baseWeights), .. m.Phases], m.Linear);
    }

    /// <summary>The objective of a multi-domain adapt run of <c>options.Train.Steps</c> steps; its mixture is a <see cref="ScheduledMixture"/>.</summary>
    public static (MixtureLmObjective Objective, ScheduledMixture Mixture) Objective(
        IReadOnlyList<TokenBlocks> blocks, IReadOnlyList<string> names, AdaptOptions options, string dataFingerprint, string? weightsFile = null)
    {
        var m = options.Domains ?? throw new ArgumentException("adapt: no domain mixture in the options");
        if (options.Replay != 0) throw new ArgumentException($"adapt: with a domain mixture every data input is a domain; set Replay to 0 (it is {options.Replay}) and give the general corpus a weight instead");
        var schedule = Schedule(m, names, BaseWeights(m, names, blocks, weightsFile));
        var t = options.Train;
        var mixture = new ScheduledMixture(blocks, names, schedule, t.Steps, (long)t.BatchSize * t.Accumulation, (int)t.Seed);
        return (new MixtureLmObjective("adapt", mixture, blocks, $"{dataFingerprint}|schedule={schedule}|block={options.BlockLength}"), mixture);
    }

    /// <summary>The adapt stage when <see cref="AdaptOptions.Domains"/> is set.</summary>
    public static IReadOnlyDictionary<string, double> Execute(StageContext ctx, AdaptOptions o)
    {
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (model)
        {
            var seed = (int)ctx.Seed;
            if (ctx.Data.Count == 0) throw new ArgumentException($"stage '{ctx.Name}': a domain mixture needs at least one data input");
            var splits = ctx.Data.Select(c => c.Split(o.ValidationFraction, seed)).ToArray();
            var blocks = splits.Select(s => Packing.Pack(s.Train, tokenizer, o.BlockLength)).ToArray();
            var names = ctx.Data.Select(c => c.Name).ToArray();
            var weightsFile = ctx.Parents.Count > 1 ? Path.Combine(ctx.Parents[1], DomainWeights.FileName) : null;
            var train = o.Train with { Seed = ctx.Seed };
            var (objective, _) = Objective(blocks, names, o with { Train = train }, string.Join("", ctx.Data.Select(c => c.Fingerprint)),
                o.Domains!.WeightsFromParent ? weightsFile : null);
            var sets = splits.Select((s, i) => (names[i], s.Validation)).ToArray();
            return Trainer.Run(model, tokenizer, objective, train, ctx.Directory, LmValidation.On(tokenizer, o.BlockLength, sets), ctx.Log).LastMetrics;
        }
    }
}
