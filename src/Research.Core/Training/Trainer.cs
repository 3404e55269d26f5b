using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Research.Data;
using Research.Models;
using Research.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>The loss or a parameter became NaN or infinite; the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>What a finished (or cached) training run reports.</summary>
public sealed record TrainResult(long Steps, long ResumedFrom, string FinalCheckpoint, IReadOnlyDictionary<string, double> LastMetrics);

/// <summary>
/// The one training loop. Every stage plugs in an objective (how a batch becomes a summed loss);
/// the loop owns the optimizer, schedule, accumulation, clipping, validation, checkpoints,
/// NaN detection, progress and metrics. Run directory layout:
/// <c>checkpoints/last/</c> (resumable; kept after the run until <see cref="RemoveCheckpoints"/>), <c>final/</c> (the stage's
/// output), <c>metrics.jsonl</c>.
/// </summary>
public static class Trainer
{
    public const string FinalDir = "final";
    public const string LastDir = "checkpoints/last";
    public const string MetricsFile = "metrics.jsonl";
    /// <summary>With LoRA: the adapter alone, in the PEFT layout (final/ holds the merged model).</summary>
    public const string AdapterDir = "adapter";
    /// <summary>Metric of a run that asked for bf16: 1 when it computed in bf16, 0 when it fell back to float32 (<see cref="PrecisionPolicy"/>).</summary>
    public const string Bf16Metric = "bf16";

    /// <param name="baseModel">With LoRA: what adapter_config.json names as base_model_name_or_path (the parent checkpoint).</param>
    public static TrainResult Run<TBatch>(
        CausalLM model,
        ITokenizer tokenizer,
        IObjective<TBatch> objective,
        TrainConfig config,
        string runDir,
        Func<CausalLM, IReadOnlyDictionary<string, double>>? validate = null,
        TextWriter? log = null,
        string? baseModel = null) where TBatch : IBatch
    {
        config.Validate();
        if (config.CheckpointEvery % config.LogEvery != 0 || config.EvalEvery % config.LogEvery != 0)
            throw new ArgumentException($"train config: checkpoint_every ({config.CheckpointEvery}) and eval_every ({config.EvalEvery}) must be multiples of log_every ({config.LogEvery})");
        log ??= Console.Out;
        // bf16 only where the device computes it natively (or when forced): otherwise float32, said in one line and in the metrics.
        var precision = PrecisionPolicy.Decide(config, model.EmbeddingWeight.device);
        if (precision.Note is not null) log.WriteLine($"{objective.Kind}: {precision.Note}");
        config = PrecisionPolicy.Effective(config, Backend.Bf16Support.For(model.EmbeddingWeight.device));
        Directory.CreateDirectory(runDir);
        var identity = Identity(objective, config, model.Config);

        // bf16: the model computes in bf16 from here on; the optimizer keeps float32 master weights.
        var fullPrecision = config.Precision == Precision.Float32 ? null : MixedPrecision.Begin(model, config.Precision);
        try
        {
            return Loop(model, tokenizer, objective, config, runDir, validate, log, identity, fullPrecision, baseModel, precision);
        }
        finally
        {
            MixedPrecision.Release(fullPrecision);
        }
    }

    static TrainResult Loop<TBatch>(CausalLM model, ITokenizer tokenizer, IObjective<TBatch> objective, TrainConfig config, string runDir,
        Func<CausalLM, IReadOnlyDictionary<string, double>>? validate, TextWriter log, string identity,
        IReadOnlyDictionary<string, Tensor>? fullPrecision, string? baseModel, PrecisionChoice precision) where TBatch : IBatch
    {
        var device = model.EmbeddingWeight.device;
        var lastDir = Path.Combine(runDir, LastDir);
        var metricsPath = Path.Combine(runDir, MetricsFile);

        // LoRA: adapters on the frozen model; only they reach the optimizer (and the resumable checkpoint).
        using var adapter = config.Lora is { } lora ? LoraAdapter.Attach(model, lora, config.Seed) : null;
        TrainMemory.EnsureFits(objective.Kind, model.ParameterCount(), fullPrecision is null ? 4 : 2,
            adapter?.TrainableCount ?? model.ParameterCount(), fullPrecision is not null);
        var auxiliary = objective is IAuxiliaryParameters aux ? aux.AuxiliaryParameters().Select(p => ("objective." + p.Name, p.P)) : [];
        using var optimizer = new AdamW((adapter?.NamedParameters() ?? model.named_parameters().Select(p => (p.name, p.parameter))).Concat(auxiliary), fullPrecision);
        if (adapter is not null)
            log.WriteLine($"{objective.Kind}: LoRA r={adapter.Options.Rank} alpha={adapter.Options.Alpha} on {string.Join(", ", adapter.Options.TargetModules)}: " +
                          $"{adapter.TrainableCount:N0} trainable of {model.ParameterCount():N0} parameters");
        long startStep = 0, tokensSeen = 0;
        MetricsLog metrics;
        foreach (var line in AtomicFile.RecoverDirectory(lastDir)) log.WriteLine($"{objective.Kind}: {line}");   // a kill inside a checkpoint save
        if (TrainCheckpoint.Exists(lastDir))
        {
            var state = TrainCheckpoint.Restore(lastDir, model, optimizer, identity, adapter, objective as IStatefulObjective);
            (startStep, tokensSeen) = (state.Step, state.TokensSeen);
            log.WriteLine($"{objective.Kind}: resuming from the last checkpoint, step {startStep} of {config.Steps} ({lastDir})");
            metrics = MetricsLog.ResumeAfter(metricsPath, startStep);
        }
        else
        {
            Backend.Devices.Seed(config.Seed);
            metrics = MetricsLog.Create(metricsPath);
        }

        using var _metrics = metrics;
        using var _chunking = LossChunking.Use(config.LossChunkRows);
        using var sink = new MetricSink();
        using var firstBad = full(1, -1L, dtype: int64, device: device).DetachFromDisposeScope();   // first step with a non-finite loss
        var progress = new Progress(objective.Kind, config.Steps, ReferenceEquals(log, Console.Out) ? null : log);
        var clock = Stopwatch.StartNew();
        long tokensThisRun = 0, lastGoodCheckpoint = startStep;
        var last = new Dictionary<string, double>();
        model.train();

        for (long step = startStep + 1; step <= config.Steps; step++)
        {
            var lr = Schedules.LearningRate(config, step - 1);
            using (var scope = NewDisposeScope())
            {
                optimizer.ZeroGrad();
                var batches = Enumerable.Range(0, config.Accumulation).Select(m => objective.Batch(step - 1, m, config, device)).ToArray();
                try
                {
                    var normalizer = batches.Sum(b => b.Normalizer);
                    if (normalizer <= 0)
                        throw new InvalidOperationException($"{objective.Kind}: step {step} has no token to learn from (every target is masked); check the data's masking");
                    var total = zeros(1, dtype: float32, device: device);
                    for (var m = 0; m < batches.Length; m++)
                    {
                        var b = batches[m];
                        adapter?.BeginMicroBatch(step - 1, m);                           // LoRA dropout masks: a function of (seed, step, micro)
                        // Normalised across the accumulated batch. The Scalar is explicit and disposed after the call: an implicit
                        // one is left to the GC, whose finalizer can free it while libtorch still reads it ("Unknown scalar type").
                        using var perBatch = normalizer.ToScalar();
                        var loss = objective.Loss(model, b, sink).div(perBatch);
                        loss.backward();
                        total.add_(loss.detach());
                        tokensThisRun += b.Tokens;
                        tokensSeen += b.Tokens;
                    }
                    sink.Add("loss", total);
                    var bad = total.isfinite().logical_not().logical_and(firstBad < 0);
                    firstBad.masked_fill_(bad, step);
                    var norm = optimizer.ClipGradNorm(config.GradClip);
                    sink.Add("grad_norm", norm);
                    optimizer.Step(lr, config);
                }
                finally
                {
                    foreach (var b in batches) b.Dispose();
                }
            }

            var atLog = step % config.LogEvery == 0 || step == config.Steps;
            if (!atLog) continue;
            var bad0 = firstBad.item<long>();
            if (bad0 >= 0)
                throw new TrainingDivergedException(
                    $"{objective.Kind}: the loss became NaN or infinite at step {bad0}; training stopped. " +
                    (lastGoodCheckpoint > 0 ? $"The last good checkpoint (step {lastGoodCheckpoint}) is kept at {lastDir}. " : "No checkpoint was written before it. ") +
                    "Lower the learning rate, check the data, or clip gradients harder.");
            var values = sink.Drain();
            values["lr"] = lr;
            if (precision.Requested == Precision.BFloat16) values[Bf16Metric] = precision.Used == Precision.BFloat16 ? 1 : 0;
            values["tokens_seen"] = tokensSeen;
            var tps = tokensThisRun / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            metrics.Write(step, "train", values, clock.Elapsed.TotalSeconds, tps);
            last = values;
            progress.Update(step, $"loss {values["loss"]:F4} lr {lr:E2} {tps / 1000:F1}k tok/s");

            var atEnd = step == config.Steps;
            if (validate is not null && ((config.EvalEvery > 0 && step % config.EvalEvery == 0) || atEnd))
            {
                model.eval();
                var val = validate(model);
                model.train();
                metrics.Write(step, "val", val, clock.Elapsed.TotalSeconds);
                foreach (var (k, v) in val) last[k] = v;
            }
            if (!atEnd && config.CheckpointEvery > 0 && step % config.CheckpointEvery == 0)
            {
                FiniteCheck.EnsureFinite(model, optimizer, objective.Kind, step, "the checkpoint", lastGoodCheckpoint, lastDir);
                TrainCheckpoint.Save(lastDir, model, tokenizer, optimizer, new TrainerState { Step = step, TokensSeen = tokensSeen, Identity = identity }, adapter,
                    objective as IStatefulObjective);
                lastGoodCheckpoint = step;
            }
        }

        var finalDir = Path.Combine(runDir, FinalDir);
        FiniteCheck.EnsureFinite(model, null, objective.Kind, config.Steps, "final/", lastGoodCheckpoint, lastDir);
        if (fullPrecision is not null) MixedPrecision.End(model, optimizer, fullPrecision);
        if (adapter is not null)
        {
            adapter.Save(Path.Combine(runDir, AdapterDir), baseModel ?? "");
            adapter.MergeAndDetach();                                                             // final/ is the merged model
        }
        Checkpoint.Save(finalDir, model, tokenizer);
        // checkpoints/last stays: the caller removes it (RemoveCheckpoints) once it has recorded the run as finished, so a kill
        // between the two never leaves a finished-but-unrecorded run without the checkpoint to resume from.
        Backend.NativeAllocator.ReturnFreePages();                                                // the activations the loop kept for reuse
        return new TrainResult(config.Steps, startStep, finalDir, last);
    }

    /// <summary>
    /// Removes <c>checkpoints/</c> of a finished run: what the caller does once the run is recorded as finished (the executor:
    /// after done.json). Until then a kill resumes from <c>checkpoints/last</c> instead of training from step 0.
    /// </summary>
    public static void RemoveCheckpoints(string runDir)
    {
        var dir = Path.Combine(runDir, Path.GetDirectoryName(LastDir)!);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }

    /// <summary>Scales gradients so their global L2 norm is at most maxNorm; returns the norm before clipping, on device (no host sync).</summary>
    public static Tensor ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToArray();
        if (grads.Length == 0) return zeros(1);
        var norm = stack(grads.Select(g => g.pow(2).sum().to(float32)).ToArray()).sum().sqrt();
        if (maxNorm > 0)
        {
            var coef = (maxNorm / (norm + 1e-6)).clamp_max(1.0);
            foreach (var g in grads) g.mul_(coef.to(g.dtype));
        }
        return norm;
    }

    /// <summary>A digest of what makes two runs the same run: objective kind, train config, model shape.</summary>
    static string Identity<TBatch>(IObjective<TBatch> objective, TrainConfig config, ModelConfig model) where TBatch : IBatch
    {
        var text = objective.Kind + "\n" + objective.Fingerprint + "\n" + JsonSerializer.Serialize(config) + "\n" + model.ToJson();
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16].ToLowerInvariant();
    }
}
