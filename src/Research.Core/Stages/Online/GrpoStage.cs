using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;

namespace Research.Stages.Online;

/// <summary>
/// Kind "grpo": loads the policy from the parent (and, with a KL penalty, the parent again as the frozen reference),
/// trains it with <see cref="GrpoObjective"/> in the one loop, then scores <see cref="GrpoOptions.Group"/> samples of
/// every held-out prompt (val_reward) and writes grpo_report.json.
/// </summary>
public sealed class GrpoExecutor : IStageExecutor
{
    public const string ReportFile = "grpo_report.json";

    public string Kind => "grpo";
    public Type Options => typeof(GrpoOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((GrpoOptions)config).Validate();
        foreach (var t in o.Reward) Rewards.Named(t.Name);                                  // unknown names fail before any work
        var prompts = PromptData.Read(o.DataPath);
        var (train, validation) = OnlineValidation.Split(prompts, ctx.Seed);
        var (rewards, rewardModel) = StageRewards.Load(Kind, o.Reward, o.RewardModelWeight, ctx);
        using var judge = rewardModel;
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (model)
        {
            if (o.Prefix.Enabled && prompts.FirstOrDefault(p => p.Demonstration is null) is { } bare)
                throw new ArgumentException($"{bare.Source}:{bare.Line}: prefix sampling needs a \"demonstration\" for every prompt");
            OnlineValidation.EnsureFits(prompts, tokenizer, model, o.MaxNewTokens, o.Prefix.Enabled ? p => tokenizer.Encode(p.Demonstration!).Length : null);
            var trainConfig = o.Train with { Seed = ctx.Seed };
            // The KL penalty's reference is the stage's input, frozen; with beta 0 it is never loaded.
            using var reference = o.Beta > 0 ? Frozen(Checkpoint.LoadModel(ctx.ParentAt(0), ctx.Device)) : null;
            var objective = new GrpoObjective(model, tokenizer, train, o, ctx.Seed, o.FilesFingerprint(), reference, rewards);
            var sampling = Sampling(o, tokenizer);
            var before = validation.Length > 0 ? OnlineValidation.MeanReward(model, tokenizer, validation, rewards, sampling, ctx.Seed) : double.NaN;
            var result = Trainer.Run(model, tokenizer, objective, trainConfig, ctx.Directory, log: ctx.Log, baseModel: ctx.ParentAt(0));
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            if (validation.Length > 0)
            {
                metrics["val_reward_before"] = before;
                metrics["val_reward"] = OnlineValidation.MeanReward(model, tokenizer, validation, rewards, sampling, ctx.Seed);
            }
            var report = new
            {
                data_path = o.DataPath, prompts = prompts.Count, train_prompts = train.Length, validation_prompts = validation.Length,
                reward = Rewards.Fingerprint(rewards), group = o.Group, iterations = o.Iterations, beta = o.Beta,
                baseline = o.Baseline.ToString(), prefix_from = o.Prefix.From, prefix_to = o.Prefix.To,
                val_reward_before = before, val_reward = metrics.GetValueOrDefault("val_reward", double.NaN),
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
            return metrics;
        }
    }

    /// <summary>How the stage samples: G completions per prompt under its filters and stop tokens.</summary>
    public static RolloutOptions Sampling(GrpoOptions o, ITokenizer tokenizer) => new()
    {
        Completions = o.Group, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
        StopTokens = [tokenizer.EosId, .. o.StopTokens],
    };

    /// <summary>A model for reference log-probs only: evaluation mode, no gradients.</summary>
    public static CausalLM Frozen(CausalLM model)
    {
        model.eval();
        foreach (var p in model.parameters()) p.requires_grad = false;
        return model;
    }
}
