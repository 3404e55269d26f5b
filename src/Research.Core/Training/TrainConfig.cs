using System.Text.Json.Serialization;

namespace Research.Training;

/// <summary>The arithmetic of the forward and backward passes (the optimizer always updates float32 weights).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Precision>))]
public enum Precision
{
    Float32,
    BFloat16,
}

[JsonConverter(typeof(JsonStringEnumConverter<LrSchedule>))]
public enum LrSchedule
{
    /// <summary>Linear warmup, then cosine decay to min_lr at the last step.</summary>
    Cosine,
    /// <summary>Warmup-stable-decay: linear warmup, constant, linear decay over the last decay_fraction of steps.</summary>
    Wsd,
    /// <summary>Linear warmup, then constant.</summary>
    Constant,
}

/// <summary>Everything the one training loop needs to know; every stage fills one of these.</summary>
public sealed partial record TrainConfig
{
    /// <summary>Optimizer steps (each of BatchSize x Accumulation sequences).</summary>
    public int Steps { get; init; } = 300;
    /// <summary>Sequences per micro-batch (what fits in memory at once).</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Micro-batches per optimizer step; the loss is normalised by real tokens across all of them.</summary>
    public int Accumulation { get; init; } = 1;
    /// <summary>Peak learning rate; 1e-3 suits sub-million-parameter models, 1e-5 to 1e-4 pretrained ones.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Final LR as a fraction of the peak (nanoGPT's min_lr = lr/10).</summary>
    public double MinLrRatio { get; init; } = 0.1;
    public int WarmupSteps { get; init; } = 20;
    public LrSchedule Schedule { get; init; } = LrSchedule.Cosine;
    /// <summary>WSD only: share of the steps spent decaying at the end (0.2 as in MiniCPM).</summary>
    public double DecayFraction { get; init; } = 0.2;
    /// <summary>AdamW decoupled weight decay on matrices (not norms or biases).</summary>
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    /// <summary>0.95 as in Llama/GPT-3 pretraining: steadier on small batches than 0.999.</summary>
    public double Beta2 { get; init; } = 0.95;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Clip the global gradient L2 norm to this (0 = off).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Write a metrics line every this many steps (the only host reads of loss and norm).</summary>
    public int LogEvery { get; init; } = 10;
    /// <summary>Run validation every this many steps (0 = only at the end).</summary>
    public int EvalEvery { get; init; } = 100;
    /// <summary>Write a resumable checkpoint every this many steps (0 = only at the end).</summary>
    public int CheckpointEvery { get; init; } = 100;
    /// <summary>Seed of torch and of the data order.</summary>
    public long Seed { get; init; } = 1234;
    /// <summary>
    /// Float32 (default), or BFloat16: forward and backward in bf16 with float32 master weights and optimizer
    /// state; the stage's output checkpoint holds the float32 master weights. With <see cref="Lora"/>, the frozen base
    /// computes in bf16 and the adapters train (and are saved) in float32; the output is the float32 base plus their
    /// update. Left out of the JSON when
    /// Float32, so configs (and cache keys) written before it existed are unchanged.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public Precision Precision { get; init; } = Precision.Float32;
    /// <summary>
    /// Train in bf16 even where the device has no native bf16 (<see cref="Backend.Bf16Support"/>); without it such a device
    /// trains a BFloat16 config in float32 and says so (<see cref="PrecisionPolicy"/>). Not part of the stage key: the key hashes
    /// the precision the run computes in (<see cref="PrecisionPolicy.Effective"/>). Left out of the JSON when false.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool ForceBf16 { get; init; }
    /// <summary>Train LoRA adapters instead of the whole model (null = full fine-tuning). The run then writes the adapter alone
    /// (PEFT layout) to <c>adapter/</c> and the merged model to <c>final/</c>, which the next stage starts from.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]   // absent when off: keys of full fine-tuning runs stay as they were
    public Models.LoraOptions? Lora { get; init; }
    /// <summary>Loss over the vocabulary a chunk of this many rows (of B·T) at a time, without full logits kept for backward
    /// (<see cref="ChunkedLoss"/>); null = automatic (512 rows for vocabularies from 32k, see <see cref="LossChunking"/>),
    /// 0 = off. Left out of the JSON when null, so existing configs and cache keys are unchanged.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? LossChunkRows { get; init; }

    public TrainConfig Validate()
    {
        void Need(bool ok, string what) { if (!ok) throw new ArgumentException($"train config: {what}"); }
        Need(Steps > 0, $"steps must be > 0 (got {Steps})");
        Need(BatchSize > 0, $"batch_size must be > 0 (got {BatchSize})");
        Need(Accumulation > 0, $"accumulation must be > 0 (got {Accumulation})");
        Need(LearningRate > 0 && double.IsFinite(LearningRate), $"learning_rate must be a positive number (got {LearningRate})");
        Need(MinLrRatio is >= 0 and <= 1, $"min_lr_ratio must be in [0, 1] (got {MinLrRatio})");
        Need(WarmupSteps >= 0, $"warmup_steps must be >= 0 (got {WarmupSteps})");
        Need(DecayFraction is > 0 and <= 1, $"decay_fraction must be in (0, 1] (got {DecayFraction})");
        Need(LogEvery > 0, $"log_every must be > 0 (got {LogEvery})");
        Need(EvalEvery >= 0 && CheckpointEvery >= 0, "eval_every and checkpoint_every must be >= 0");
        Need(BatchSize <= 1 << 20, $"batch_size must be at most {1 << 20} (got {BatchSize}); use accumulation for larger batches");
        Need(Accumulation <= 1 << 16, $"accumulation must be at most {1 << 16} (got {Accumulation})");
        Need(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"weight_decay must be a finite number >= 0 (got {WeightDecay})");
        Need(Beta1 is >= 0 and < 1, $"beta1 must be in [0, 1) (got {Beta1})");
        Need(Beta2 is >= 0 and < 1, $"beta2 must be in [0, 1) (got {Beta2})");
        Need(Epsilon > 0 && double.IsFinite(Epsilon), $"epsilon must be a positive number (got {Epsilon})");
        Need(GradClip >= 0 && double.IsFinite(GradClip), $"grad_clip must be a finite number >= 0 (got {GradClip}); 0 = off");
        Need(LossChunkRows is null or >= 0, $"loss_chunk_rows must be >= 0 (got {LossChunkRows}); 0 = off, null = automatic");
        Lora?.Validate();
        return this;
    }
}

/// <summary>Learning rate at a step: a pure function of the config.</summary>
public static class Schedules
{
    public static double LearningRate(TrainConfig c, long step)
    {
        double peak = c.LearningRate, min = c.LearningRate * c.MinLrRatio;
        if (step < c.WarmupSteps) return peak * (step + 1) / c.WarmupSteps;
        switch (c.Schedule)
        {
            case LrSchedule.Constant:
                return peak;
            case LrSchedule.Wsd:
            {
                var decaySteps = Math.Max(1, (int)Math.Round(c.Steps * c.DecayFraction));
                var decayStart = c.Steps - decaySteps;
                if (step < decayStart) return peak;
                var progress = Math.Min(1.0, (step - decayStart + 1) / (double)decaySteps);
                return peak + (min - peak) * progress;
            }
            default:
            {
                var span = Math.Max(1, c.Steps - 1 - c.WarmupSteps);
                var progress = Math.Clamp((step - c.WarmupSteps) / (double)span, 0, 1);
                return min + 0.5 * (1 + Math.Cos(Math.PI * progress)) * (peak - min);
            }
        }
    }
}
