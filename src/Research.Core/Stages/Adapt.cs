using Research.Data;
using Research.Models;
using Research.Training;

namespace Research.Stages;

/// <summary>
/// adapt: continual (domain-adaptive) pretraining on a domain corpus, replaying a fraction of general
/// text against forgetting ("Don't Stop Pretraining"; replay as in continual-learning practice).
/// </summary>
public sealed partial record AdaptOptions
{
    /// <summary>Share of sequences drawn from the general corpus: 0.1 = one in ten. 0 = no replay.</summary>
    public double Replay { get; init; } = 0.1;
    /// <summary>Tokens per training sequence.</summary>
    public int BlockLength { get; init; } = 128;
    /// <summary>Share of documents of each corpus held out for validation (seeded, by document).</summary>
    public double ValidationFraction { get; init; } = 0.04;
    public TrainConfig Train { get; init; } = new() { Steps = 200, LearningRate = 1e-3, WarmupSteps = 10, EvalEvery = 100, CheckpointEvery = 40 };
    /// <summary>Several domains with (scheduled) weights instead of domain + replay: see <see cref="DomainMixtureOptions"/>. Null = domain + replay.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public DomainMixtureOptions? Domains { get; init; }
}

/// <summary>Runs adapt from the parent's checkpoint: data input 1 is the domain corpus, input 2 (optional) the general one.</summary>
public sealed class AdaptExecutor : IStageExecutor
{
    public string Kind => "adapt";
    public Type Options => typeof(AdaptOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = (AdaptOptions)config;
        if (o.Domains is not null) return AdaptMixture.Execute(ctx, o);
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (model)
        {
            var seed = (int)ctx.Seed;
            var domain = ctx.DataAt(0, "a domain corpus");
            var (domainTrain, domainVal) = domain.Split(o.ValidationFraction, seed);
            var domainBlocks = Packing.Pack(domainTrain, tokenizer, o.BlockLength);
            var sets = new List<(string, Corpus)> { (domain.Name, domainVal) };
            TokenBlocks generalBlocks;
            string fingerprint = domain.Fingerprint;
            if (ctx.Data.Count > 1)
            {
                var general = ctx.Data[1];
                var (generalTrain, generalVal) = general.Split(o.ValidationFraction, seed);
                generalBlocks = Packing.Pack(generalTrain, tokenizer, o.BlockLength);
                sets.Add((general.Name, generalVal));
                fingerprint += general.Fingerprint;
            }
            else if (o.Replay > 0)
                throw new ArgumentException($"stage '{ctx.Name}': replay {o.Replay} needs a general corpus to replay (second data input)");
            else generalBlocks = domainBlocks;
            var train = o.Train with { Seed = ctx.Seed };
            var objective = Adapt.Objective(domainBlocks, generalBlocks, o with { Train = train }, fingerprint);
            return Trainer.Run(model, tokenizer, objective, train, ctx.Directory, LmValidation.On(tokenizer, o.BlockLength, sets.ToArray()), ctx.Log, ctx.ParentAt(0)).LastMetrics;
        }
    }
}

public static class Adapt
{
    /// <summary>The adapt objective: language modelling over domain blocks mixed with general blocks at the replay share.</summary>
    public static MixtureLmObjective Objective(TokenBlocks domain, TokenBlocks general, AdaptOptions options, string dataFingerprint)
    {
        if (options.Replay is < 0 or >= 1)
            throw new ArgumentException($"adapt: replay must be in [0, 1) (got {options.Replay}); 0.1 = one sequence in ten from the general corpus");
        var mixture = Mixture.Replay(domain, general, options.Replay, (int)options.Train.Seed);
        return new MixtureLmObjective("adapt", mixture, [domain, general], $"{dataFingerprint}|replay={options.Replay:R}|block={options.BlockLength}");
    }

    /// <summary>Plain language modelling on one corpus (pretraining from scratch uses this too).</summary>
    public static MixtureLmObjective Pretrain(TokenBlocks corpus, TrainConfig train, string dataFingerprint, string kind = "pretrain")
    {
        var mixture = new Mixture([new MixtureSource("corpus", corpus, 1.0)], (int)train.Seed);
        return new MixtureLmObjective(kind, mixture, [corpus], dataFingerprint);
    }
}
