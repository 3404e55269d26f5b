using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;

namespace Research.Stages;

/// <summary>
/// Kind "align": reads the preference data, caches the parent's reference log-probs (parent loaded, used, disposed), loads the
/// policy from the parent, trains with the one loop, and writes align_report.json and generations.jsonl next to final/.
/// </summary>
public sealed class AlignExecutor : IStageExecutor
{
    public const string ReportFile = "align_report.json";
    public const string GenerationsFile = "generations.jsonl";
    /// <summary>The pairs a pairs stage leaves beside its final/: what an align stage after it reads when it has no data of its own.</summary>
    public const string ParentPairsFile = "pairs.jsonl";

    public string Kind => "align";
    public Type Options => typeof(AlignOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((AlignOptions)config).Validate();
        var parent = ctx.ParentAt(0);
        // Without a path or a data input, the pairs a pairs stage wrote beside its final/ (the parent): preference-data distillation.
        var parentPairs = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(parent)) ?? "", ParentPairsFile);
        var file = o.DataPath is { } path ? PreferenceData.Read(path)
            : ctx.Data.Count == 0 && File.Exists(parentPairs) ? PreferenceData.Read(parentPairs)
            : PreferenceData.Parse(ctx.DataAt(0, "preference data (JSONL lines), or set DataPath, or start from a pairs stage").Documents, ctx.Data[0].Name);
        var tokenizer = Tokenizers.Load(parent);
        var modelConfig = ModelConfig.Load(Path.Combine(parent, Checkpoint.ConfigFile));
        var train = o.Train with { Seed = ctx.Seed };
        var data = Align.Prepare(file, tokenizer, o, ctx.Seed, modelConfig.MaxPositionEmbeddings);
        var rows = 2 * train.BatchSize;
        if (Align.BetaScaleHint(o, data.Train) is { } hint) ctx.Log.WriteLine(hint);
        (data, var computed) = ReferenceCache.Prepare(parent, ctx.Directory, data, ctx.Device, rows, ctx.Log);   // reference model gone after this

        var (model, _) = Checkpoint.Load(parent, ctx.Device);
        using (model)
        {
            // The parent's own greedy answers (the policy is still the parent here, even when the trainer resumes below).
            var refGens = Align.Generate(model, data.Validation, o, tokenizer);
            var refSamples = Align.Sample(model, data.Validation, o, tokenizer, ctx.Seed);
            var objective = new AlignObjective(data.Train, o, tokenizer.PadId, data.Fingerprint());
            var result = Trainer.Run(model, tokenizer, objective, train, ctx.Directory, Align.Validation(data.Validation, o, tokenizer, rows), ctx.Log, parent);
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            if (refGens.Count > 0) metrics["val_ref_gen_length"] = refGens.Average(g => g.Tokens.Length);
            if (refSamples.Count > 0)
            {
                metrics["val_ref_sample_length"] = Align.MeanLength(refSamples);
                metrics["val_ref_expected_length"] = Align.MeanExpectedLength(refSamples);
                metrics["val_ref_sample_capped"] = Align.CappedShare(refSamples);
            }
            var gens = Align.Generate(model, data.Validation, o, tokenizer);
            var samples = Align.Sample(model, data.Validation, o, tokenizer, ctx.Seed);
            if (samples.Count > 0)
            {
                metrics["val_sample_length"] = Align.MeanLength(samples);
                metrics["val_expected_length"] = Align.MeanExpectedLength(samples);
                metrics["val_sample_capped"] = Align.CappedShare(samples);
            }
            var lines = gens.Select((g, i) => JsonSerializer.Serialize(new
            {
                prompt = g.Item.Prompt,
                chosen = tokenizer.Decode(g.Item.First.Tokens[g.Item.First.PromptLength..]),
                rejected = g.Item.Paired ? tokenizer.Decode(g.Item.Second.Tokens[g.Item.Second.PromptLength..]) : null,
                generation = tokenizer.Decode(g.Tokens),
                tokens = g.Tokens.Length,
                samples = i < samples.Count ? samples[i].Samples.Select(tokenizer.Decode).ToArray() : null,
                expected_tokens = i < samples.Count ? samples[i].Expected : null,
            }));
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, GenerationsFile), string.Concat(lines.Select(l => l + "\n")));
            var report = new
            {
                mode = o.Mode.ToString(),
                lines_read = file.LinesRead,
                records = file.Records.Count,
                skipped_empty_completion = file.Skipped,
                skipped_at = file.SkippedAt,
                prompts_truncated = data.PromptsTruncated,
                completions_truncated = data.CompletionsTruncated,
                train_examples = data.Train.Count,
                validation_examples = data.Validation.Count,
                reference_computed = computed,
                generation_mean_tokens = gens.Count > 0 ? gens.Average(g => g.Tokens.Length) : 0,
                reference_generation_mean_tokens = refGens.Count > 0 ? refGens.Average(g => g.Tokens.Length) : 0,
                sample_mean_tokens = samples.Count > 0 ? Align.MeanLength(samples) : 0,
                reference_sample_mean_tokens = refSamples.Count > 0 ? Align.MeanLength(refSamples) : 0,
                expected_mean_tokens = samples.Count > 0 ? Align.MeanExpectedLength(samples) : 0,
                reference_expected_mean_tokens = refSamples.Count > 0 ? Align.MeanExpectedLength(refSamples) : 0,
                sample_capped_share = samples.Count > 0 ? Align.CappedShare(samples) : 0,
                reference_sample_capped_share = refSamples.Count > 0 ? Align.CappedShare(refSamples) : 0,
                metrics,
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            return metrics;
        }
    }
}
