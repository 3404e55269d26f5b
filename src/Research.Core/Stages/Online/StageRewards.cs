using Research.Stages.Reward;

namespace Research.Stages.Online;

/// <summary>
/// The reward of an on-policy stage as values: its registered terms and, when the stage has a reward model as its second
/// parent (<c>Grpo.rewardModel</c>, <c>OnlineDpo.rewardModel</c>), that model with its weight. The model's checkpoint is in
/// the stage's key through the parent's key, so it needs no registration.
/// </summary>
public static class StageRewards
{
    public const string ModelName = "reward_model";

    /// <summary>The terms, and the loaded reward model (the caller disposes it) or null.</summary>
    public static (IReadOnlyList<(IReward Reward, double Weight)> Terms, RewardModel? Model) Load(string kind, IReadOnlyList<RewardTerm> named, double? modelWeight, StageContext ctx)
    {
        var terms = Rewards.Resolve(named).ToList();
        if (modelWeight is not { } w)
        {
            if (ctx.Parents.Count > 1)
                throw new ArgumentException($"stage '{ctx.Name}' ({kind}): it has a second parent but no reward-model weight; give the reward model with {(kind == "grpo" ? "Grpo" : "OnlineDpo")}.rewardModel");
            return (terms, null);
        }
        if (ctx.Parents.Count < 2)
            throw new ArgumentException($"stage '{ctx.Name}' ({kind}): reward_model_weight is set but the stage has no reward model as its second parent; use {(kind == "grpo" ? "Grpo" : "OnlineDpo")}.rewardModel RM_STAGE WEIGHT");
        var model = RewardModel.Load(ModelName, ctx.Parents[1], ctx.Device);
        terms.Insert(0, (model, w));
        return (terms, model);
    }
}
