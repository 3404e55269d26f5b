using System.Text.Json.Serialization;
using Research.Data;
using Research.Training;

namespace Research.Stages;

/// <summary>Which family of preference objective an align stage trains.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<AlignMode>))]
public enum AlignMode
{
    /// <summary>Reference-based pairwise losses (DPO, IPO, LN-DPO, ...): <see cref="PreferenceOptions.Losses"/>.</summary>
    Paired,
    /// <summary>SimPO, reference-free (the reference log-probs serve only the diagnostics).</summary>
    SimPO,
    /// <summary>ORPO, reference-free (idem).</summary>
    Orpo,
    /// <summary>KTO on unpaired examples; paired data is unpaired (chosen desirable, rejected undesirable).</summary>
    Kto,
    /// <summary>Point-wise DPO (ULMA) on labels in [0, 1]; paired data gives labels 1 and 0.</summary>
    Pointwise,
}

/// <summary>align: preference optimisation from the parent checkpoint on JSONL preference data (<see cref="PreferenceData"/>).</summary>
public sealed partial record AlignOptions : IReadsFiles
{
    public string FilesFingerprint() => DataPath is { } path ? SftData.FileFingerprint(path) : "";

    /// <summary>Losses, beta (0.1), label smoothing, SimPO gamma, ORPO lambda, KTO weights (TRL defaults).</summary>
    public PreferenceOptions Preference { get; init; } = new();
    public AlignMode Mode { get; init; } = AlignMode.Paired;
    /// <summary>The preference JSONL; null = the stage's first data input, each document one JSONL line.</summary>
    public string? DataPath { get; init; }
    /// <summary>
    /// How records become tokens: null = <c>BOS prompt</c> then <c>completion EOS</c>, a messages prompt written as
    /// <c>&lt;|role|&gt;\n...</c> text; "model" = the model's own chat_template (a Hugging Face model's tokenizer_config.json)
    /// renders messages prompts as tune renders conversations (the prompt ends with the generation prompt, the completion is the
    /// assistant turn with the template's end of turn); "plain" / "chatml" = built-ins. String prompts stay text under any template.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]   // absent when off: keys of existing align stages stay as they were
    public string? Template { get; init; }
    /// <summary>Tokens of prompt + completion per row (capped at the model's max_position_embeddings).</summary>
    public int MaxLength { get; init; } = 256;
    /// <summary>A prompt is left-truncated to this many tokens when a row would not fit (TRL max_prompt_length 128... 512).</summary>
    public int MaxPromptLength { get; init; } = 128;
    /// <summary>Share of records held out for preference accuracy (seeded, a pair stays whole).</summary>
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>Held-out prompts answered greedily into generations.jsonl and val_gen_length (0 = none).</summary>
    public int Generations { get; init; } = 8;
    public int GenerationTokens { get; init; } = 64;
    /// <summary>
    /// Answers sampled per held-out prompt (temperature <see cref="SampleTemperature"/>, EOS stops) into val_sample_length, 0 =
    /// none. Greedy length is a step function of the logits (an EOS decision flips for every method at once); the mean length of
    /// sampled answers moves continuously with the stop probability. Sample j of prompt i uses the seed (stage seed, i, j) for
    /// every model, the parent included, so methods are compared on the same random numbers.
    /// </summary>
    public int SamplesPerPrompt { get; init; }
    public double SampleTemperature { get; init; } = 1.0;
    /// <summary>Nucleus of the sampled answers (1 = off; papers sample with 0.9..0.95): a micro model's long tail of bytes otherwise derails samples into noise that never stops.</summary>
    public double SampleTopP { get; init; } = 1.0;
    /// <summary>
    /// BatchSize counts pairs (2 rows each). LR 5e-4: DPO on billion-parameter models uses 5e-7..5e-6 (TRL 1e-6), but
    /// the micro models here were pretrained at 1e-3..2e-3 and move little below 1e-4 in a few dozen steps; a quarter to a
    /// half of the pretraining LR is the usual fine-tuning ratio. WeightDecay 0 as TRL: decay pulls toward zero, not toward
    /// the reference; the KL leash is beta.
    /// </summary>
    public TrainConfig Train { get; init; } = new() { Steps = 100, BatchSize = 8, LearningRate = 5e-4, WarmupSteps = 5, WeightDecay = 0.0, LogEvery = 5, EvalEvery = 50, CheckpointEvery = 50 };

    public AlignOptions Validate()
    {
        Preference.Validate();
        if (MaxLength < 2) throw new ArgumentException($"align: max_length must be >= 2 (got {MaxLength})");
        if (Generations < 0 || GenerationTokens < 1) throw new ArgumentException("align: generations must be >= 0 and generation_tokens >= 1");
        if (SamplesPerPrompt < 0 || !(SampleTemperature > 0) || !(SampleTopP > 0 && SampleTopP <= 1))
            throw new ArgumentException($"align: samples_per_prompt must be >= 0 (got {SamplesPerPrompt}), sample_temperature > 0 (got {SampleTemperature}) and sample_top_p in (0, 1] (got {SampleTopP})");
        return this;
    }
}
