using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Uda;

/// <summary>
/// What the three classification kinds share: read the file, pick the head's labels, load the parent as a classifier, encode
/// each side, train with <see cref="ClassifyObjective"/> in the one loop, and write classify_report.json beside final/.
/// </summary>
public static class ClassifyStage
{
    public const string ReportFile = "classify_report.json";

    /// <summary>Rows of examples, their class indices (labelled rows only) and source-domain indices (sorted domain names).</summary>
    public static EncodedSide Encode(IReadOnlyList<LabeledText> examples, ITokenizer tokenizer, IReadOnlyList<string> labels, int maxLength, bool labelled)
    {
        var domains = examples.Select(x => x.Domain).Distinct().Order(StringComparer.Ordinal).Select((d, i) => (d, i)).ToDictionary(x => x.d, x => (long)x.i);
        var truncated = 0;
        var rows = examples.Select(x =>
        {
            var ids = ClassifyBatch.Encode(tokenizer, x.Text, maxLength, out var cut);
            if (cut) truncated++;
            return ids;
        }).ToArray();
        return new EncodedSide(rows, labelled ? ClassificationData.Indices(examples, labels) : new long[examples.Count],
            examples.Select(x => domains[x.Domain]).ToArray(), truncated);
    }

    public static IReadOnlyDictionary<string, double> Run(StageContext ctx, string kind, IClassificationData o, TrainConfig train, UdaOptions? uda, bool oracle)
    {
        var all = ClassificationData.Read(o.DataPath);
        var tent = kind == "tent";
        var parent = ctx.ParentAt(0);
        // The head's classes: the parent's when it has a head, else the labels of the examples it trains on.
        var parentConfig = ModelConfig.Load(Path.Combine(parent, Checkpoint.ConfigFile));
        var labelledSide = oracle ? ClassificationData.Of(all, o.TargetDomain, o.DataPath) : tent ? null : ClassificationData.Of(all, o.SourceDomain, o.DataPath);
        var labels = parentConfig.NumLabels is not null ? SequenceClassification.Labels(parentConfig)
            : labelledSide is not null ? ClassificationData.LabelsOf(labelledSide, o.DataPath)
            : throw new InvalidDataException($"{parent}: tent adapts a classifier, but this checkpoint has no classification head (config.json num_labels); run classify first");
        var (model, tokenizer) = SequenceClassification.Load(parent, labels, ctx.Seed, ctx.Device);
        using (model)
        {
            var pad = model.Config.PadTokenId ?? tokenizer.PadId;
            var maxLength = Math.Min(o.MaxLength, model.Config.MaxPositionEmbeddings);
            var source = labelledSide is null ? null : Encode(labelledSide.Where(x => x.Label is not null).ToArray(), tokenizer, labels, maxLength, labelled: true);
            var targetExamples = uda is not null || tent ? ClassificationData.Of(all, o.TargetDomain, o.DataPath) : null;
            var target = targetExamples is null ? null : Encode(targetExamples, tokenizer, labels, maxLength, labelled: false);   // labels never read
            var fingerprint = $"{ClassificationData.FileFingerprint(o.DataPath)}|{kind}|{JsonSerializer.Serialize(o, o.GetType())}";
            using var objective = new ClassifyObjective(kind, source, target, uda, pad, model.Config.HiddenSize, ctx.Seed, fingerprint, ctx.Device);
            var frozen = tent ? FreezeAllButNorms(model) : [];
            TrainResult result;
            try
            {
                result = Trainer.Run(model, tokenizer, objective, train with { Seed = ctx.Seed }, ctx.Directory, log: ctx.Log, baseModel: parent);
            }
            finally
            {
                foreach (var p in frozen) p.requires_grad = true;
            }
            var report = new
            {
                kind, data_path = o.DataPath, labels, method = uda?.Method.ToString() ?? (tent ? "tent" : oracle ? "target_oracle" : "source_only"),
                source_examples = source?.Rows.Length ?? 0, target_examples = target?.Rows.Length ?? 0,
                truncated = (source?.Truncated ?? 0) + (target?.Truncated ?? 0), max_length = maxLength,
                trainable = tent ? NormParameters(model).Sum(p => p.numel()) : model.ParameterCount(),
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            return result.LastMetrics;
        }
    }

    /// <summary>The normalisation parameters (every Norm module's weight, and bias for LayerNorm): what TENT updates.</summary>
    public static HashSet<TorchSharp.Modules.Parameter> NormParameters(CausalLM model) =>
        model.named_modules().Where(m => m.module is Norm).SelectMany(m => m.module.parameters()).ToHashSet();

    /// <summary>Turns gradients off for every parameter but the normalisation ones; returns those it turned off.</summary>
    public static IReadOnlyList<TorchSharp.Modules.Parameter> FreezeAllButNorms(CausalLM model)
    {
        var norms = NormParameters(model);
        var frozen = model.parameters().Where(p => p.requires_grad && !norms.Contains(p)).ToArray();
        foreach (var p in frozen) p.requires_grad = false;
        return frozen;
    }
}

/// <summary>Kind "classify": the source-only baseline (or, with <see cref="ClassifyOn.Target"/>, the target oracle).</summary>
public sealed class ClassifyExecutor : IStageExecutor
{
    public string Kind => "classify";
    public Type Options => typeof(ClassifyOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((ClassifyOptions)config).Validate();
        return ClassifyStage.Run(ctx, Kind, o, o.Train, null, o.On == ClassifyOn.Target);
    }
}

/// <summary>Kind "uda": source classification plus the adaptation term of <see cref="UdaOptions.Method"/>.</summary>
public sealed class UdaExecutor : IStageExecutor
{
    public string Kind => "uda";
    public Type Options => typeof(UdaOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((UdaOptions)config).Validate();
        return ClassifyStage.Run(ctx, Kind, o, o.Train, o, oracle: false);
    }
}

/// <summary>Kind "tent": continual entropy minimisation on the target stream, normalisation weights only.</summary>
public sealed class TentExecutor : IStageExecutor
{
    public string Kind => "tent";
    public Type Options => typeof(TentOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((TentOptions)config).Validate();
        return ClassifyStage.Run(ctx, Kind, o, o.Train, null, oracle: false);
    }
}
