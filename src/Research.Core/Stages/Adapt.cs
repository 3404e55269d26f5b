using Research.Data;
using Research.Training;

namespace Research.Stages;

/// <summary>
/// adapt: continual (domain-adaptive) pretraining on a domain corpus, replaying a fraction of general
/// text against forgetting ("Don't Stop Pretraining"; replay as in continual-learning practice).
/// </summary>
public sealed record AdaptOptions
{
    /// <summary>Share of sequences drawn from the general corpus: 0.1 = one in ten. 0 = no replay.</summary>
    public double Replay { get; init; } = 0.1;
    /// <summary>Tokens per training sequence.</summary>
    public int BlockLength { get; init; } = 128;
    public TrainConfig Train { get; init; } = new() { LearningRate = 5e-4, WarmupSteps = 10 };
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
