using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;

namespace Research.Stages.Reward;

/// <summary>
/// Kind "reward": reads the pairs, loads the parent as a one-label classifier (a new <c>score</c> head, normal(0,
/// initializer_range) from the seed, unless it has one), trains it with <see cref="RewardObjective"/> in the one loop and
/// writes reward_report.json beside final/, which holds the model in Hugging Face's sequence-classification layout.
/// </summary>
public sealed class RewardExecutor : IStageExecutor
{
    public const string ReportFile = "reward_report.json";

    public string Kind => "reward";
    public Type Options => typeof(RewardOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((RewardOptions)config).Validate();
        var parent = ctx.ParentAt(0);
        var (model, tokenizer) = SequenceClassification.Load(parent, RewardModel.Labels, ctx.Seed, ctx.Device);
        using (model)
        {
            var pad = model.Config.PadTokenId ?? tokenizer.PadId;
            var data = RewardData.Prepare(o.DataPath, tokenizer, Math.Min(o.MaxLength, model.Config.MaxPositionEmbeddings), o.MaxPromptLength, o.ValidationFraction, ctx.Seed);
            var train = o.Train with { Seed = ctx.Seed };
            var rows = 2 * train.BatchSize;
            var before = Validation(data.Validation, pad, rows)(model);
            var objective = new RewardObjective(data.Train, pad);
            var result = Trainer.Run(model, tokenizer, objective, train, ctx.Directory, Validation(data.Validation, pad, rows), ctx.Log, parent);
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            foreach (var (k, v) in before) metrics[k + "_before"] = v;
            var report = new
            {
                data_path = o.DataPath, lines_read = data.File.LinesRead, records = data.File.Records.Count, skipped_empty_completion = data.File.Skipped,
                train_pairs = data.Train.Count, validation_pairs = data.Validation.Count, with_margin = data.Train.Concat(data.Validation).Count(p => p.Margin != 0),
                prompts_truncated = data.PromptsTruncated, completions_truncated = data.CompletionsTruncated, head = SequenceClassification.WeightName,
                metrics,
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report,
                new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
            return metrics;
        }
    }

    /// <summary>
    /// Held-out metrics: val_pair_accuracy (share of pairs with r(chosen) &gt; r(rejected)), val_reward_margin (mean r_c − r_r)
    /// and val_reward_loss (mean Bradley–Terry loss with the pairs' margins).
    /// </summary>
    public static Func<CausalLM, IReadOnlyDictionary<string, double>> Validation(IReadOnlyList<RewardPair> val, int padId, int batchRows) =>
        model =>
        {
            var m = new Dictionary<string, double>();
            if (val.Count == 0) return m;
            var chosen = RewardModel.Scores(model, val.Select(p => p.Chosen).ToArray(), padId, batchRows);
            var rejected = RewardModel.Scores(model, val.Select(p => p.Rejected).ToArray(), padId, batchRows);
            m["val_pair_accuracy"] = RewardLosses.Accuracy(chosen, rejected);
            m["val_reward_margin"] = chosen.Select((c, i) => c - rejected[i]).Average();
            // -log sigma(h) = log(1 + exp(-h)), computed stably.
            m["val_reward_loss"] = val.Select((p, i) => chosen[i] - rejected[i] - p.Margin).Average(h => Math.Max(-h, 0) + Math.Log(1 + Math.Exp(-Math.Abs(h))));
            return m;
        };
}
