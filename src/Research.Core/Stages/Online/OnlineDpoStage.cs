using Research.Models;
using Research.Training;

namespace Research.Stages.Online;

/// <summary>
/// Kind "online_dpo": loads the policy from the parent and the parent again as the frozen reference, trains with
/// <see cref="OnlineDpoObjective"/> in the one loop, and reports val_reward before and after (two seeded samples per held-out prompt).
/// </summary>
public sealed class OnlineDpoExecutor : IStageExecutor
{
    public string Kind => "online_dpo";
    public Type Options => typeof(OnlineDpoOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((OnlineDpoOptions)config).Validate();
        foreach (var t in o.Reward) Rewards.Named(t.Name);
        var prompts = PromptData.Read(o.DataPath);
        var (train, validation) = OnlineValidation.Split(prompts, ctx.Seed);
        var (rewards, rewardModel) = StageRewards.Load(Kind, o.Reward, o.RewardModelWeight, ctx);
        using var judge = rewardModel;
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (model)
        {
            OnlineValidation.EnsureFits(prompts, tokenizer, model, o.MaxNewTokens);
            using var reference = GrpoExecutor.Frozen(Checkpoint.LoadModel(ctx.ParentAt(0), ctx.Device));
            var objective = new OnlineDpoObjective(model, reference, tokenizer, train, o, ctx.Seed, o.FilesFingerprint(), rewards);
            var sampling = new RolloutOptions
            {
                Completions = 2, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP, StopTokens = [tokenizer.EosId, .. o.StopTokens],
            };
            var before = validation.Length > 0 ? OnlineValidation.MeanReward(model, tokenizer, validation, rewards, sampling, ctx.Seed) : double.NaN;
            var result = Trainer.Run(model, tokenizer, objective, o.Train with { Seed = ctx.Seed }, ctx.Directory, log: ctx.Log, baseModel: ctx.ParentAt(0));
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            if (validation.Length > 0)
            {
                metrics["val_reward_before"] = before;
                metrics["val_reward"] = OnlineValidation.MeanReward(model, tokenizer, validation, rewards, sampling, ctx.Seed);
            }
            return metrics;
        }
    }
}
