using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;

namespace Research.Stages.Online;

/// <summary>
/// Kind "grpo": loads the policy from the parent, trains it with <see cref="GrpoObjective"/> in the one loop, then scores
/// <see cref="GrpoOptions.Group"/> samples of every held-out prompt (val_reward) and writes grpo_report.json.
/// </summary>
public sealed class GrpoExecutor : IStageExecutor
{
    public const string ReportFile = "grpo_report.json";
    /// <summary>Share of prompts held out for val_reward (seeded), at most 32.</summary>
    public const double ValidationFraction = 0.2;

    public string Kind => "grpo";
    public Type Options => typeof(GrpoOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((GrpoOptions)config).Validate();
        foreach (var t in o.Reward) Rewards.Named(t.Name);                                  // unknown names fail before any work
        var prompts = PromptData.Read(o.DataPath);
        var order = new Rng(Rng.Derive(ctx.Seed, 17)).Permutation(prompts.Count);
        var held = prompts.Count < 5 ? 0 : Math.Min(32, (int)(prompts.Count * ValidationFraction));
        var validation = order.Take(held).Select(i => prompts[i]).ToArray();
        var train = order.Skip(held).Select(i => prompts[i]).ToArray();
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        using (model)
        {
            foreach (var p in prompts)
                if (GrpoObjective.Ids(tokenizer, p.Prompt).Length + o.MaxNewTokens > model.Config.MaxPositionEmbeddings)
                    throw new ArgumentException($"{p.Source}:{p.Line}: the prompt with {o.MaxNewTokens} new tokens exceeds the model's context of {model.Config.MaxPositionEmbeddings}; shorten it or lower max_new_tokens");
            var trainConfig = o.Train with { Seed = ctx.Seed };
            var objective = new GrpoObjective(model, tokenizer, train, o, ctx.Seed, o.FilesFingerprint());
            var before = validation.Length > 0 ? MeanReward(model, tokenizer, validation, o, ctx.Seed) : double.NaN;
            var result = Trainer.Run(model, tokenizer, objective, trainConfig, ctx.Directory, log: ctx.Log, baseModel: ctx.ParentAt(0));
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            if (validation.Length > 0)
            {
                metrics["val_reward_before"] = before;
                metrics["val_reward"] = MeanReward(model, tokenizer, validation, o, ctx.Seed);
            }
            var report = new
            {
                data_path = o.DataPath, prompts = prompts.Count, train_prompts = train.Length, validation_prompts = validation.Length,
                reward = Rewards.Fingerprint(o.Reward), group = o.Group, val_reward_before = before, val_reward = metrics.GetValueOrDefault("val_reward", double.NaN),
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
            return metrics;
        }
    }

    /// <summary>Mean reward of G seeded samples per held-out prompt (the same seeds before and after training).</summary>
    public static double MeanReward(CausalLM model, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, GrpoOptions o, long seed)
    {
        var rollouts = Rollouts.Sample(model, prompts.Select(p => (IReadOnlyList<int>)GrpoObjective.Ids(tokenizer, p.Prompt)).ToArray(), new RolloutOptions
        {
            Completions = o.Group, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
            Seed = unchecked((long)Rng.Derive(seed, 23)), StopTokens = [tokenizer.EosId, .. o.StopTokens],
        }, tokenizer);
        return rollouts.Average(r => Rewards.Score(o.Reward, prompts[r.Prompt].Prompt, tokenizer.Decode(r.Tokens.Where(t => t != tokenizer.EosId)), prompts[r.Prompt].Answer, r.Prompt));
    }
}
