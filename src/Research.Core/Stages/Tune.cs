using System.Text.Json;
using System.Text.Json.Nodes;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// tune: supervised fine-tuning on prompt/completion or chat examples (JSONL in the Hugging Face conventions,
/// see <see cref="SftData"/>), loss on completion / assistant tokens only, as TRL's SFTTrainer does it.
/// </summary>
public sealed partial record TuneOptions : IReadsFiles
{
    public string FilesFingerprint() => SftData.FileFingerprint(DataPath);

    /// <summary>The JSONL file of examples; its SHA-256 is part of the run's identity.</summary>
    public string DataPath { get; init; } = "";
    /// <summary>Chat template for conversational examples: "plain" (tiny byte models), "chatml", or "model" (a Hugging Face
    /// model's own chat_template, loss mask derived from the rendering); see <see cref="ChatTemplates"/>.</summary>
    public string Template { get; init; } = "plain";
    /// <summary>Positions per training row; an example may have BlockLength + 1 tokens (BOS .. EOS), its last one only a target.</summary>
    public int BlockLength { get; init; } = 128;
    /// <summary>Pack several examples per row (best-fit decreasing), attention kept within each example.</summary>
    public bool Packing { get; init; } = true;
    /// <summary>NEFTune noise on the embeddings while training: uniform(-1, 1) · alpha / sqrt(L·d). 0 = off; the paper uses 5.</summary>
    public double NeftuneAlpha { get; init; }
    /// <summary>Share of examples held out for validation (seeded, by example).</summary>
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>What to do with an example longer than BlockLength + 1 tokens (counted in tune_report.json).</summary>
    public SftTruncation Truncation { get; init; } = SftTruncation.KeepCompletion;
    /// <summary>Lower peak LR than adapt's 1e-3 (a fine-tune should move a trained model less; pretrained billions-scale
    /// models want 1e-5 to 2e-5), no weight decay (TRL's default), short warmup.</summary>
    public TrainConfig Train { get; init; } = new() { Steps = 200, BatchSize = 8, LearningRate = 3e-4, WeightDecay = 0.0, WarmupSteps = 10, EvalEvery = 50, CheckpointEvery = 50 };

    public TuneOptions Validate()
    {
        if (BlockLength < 2) throw new ArgumentException($"tune: block_length must be >= 2 (got {BlockLength})");
        if (!(NeftuneAlpha >= 0) || !double.IsFinite(NeftuneAlpha)) throw new ArgumentException($"tune: neftune_alpha must be >= 0 (got {NeftuneAlpha}); 0 = off");
        if (!(ValidationFraction is >= 0 and < 1)) throw new ArgumentException($"tune: validation_fraction must be in [0, 1) (got {ValidationFraction})");
        return this;
    }
}

/// <summary>
/// The SFT objective. The training rows (packed bins, or single examples) are visited in a seeded permutation per
/// epoch, so batch (step, micro) is a pure function of the position and resuming needs no data state.
/// </summary>
public sealed class TuneObjective : IObjective<SftBatch>
{
    readonly IReadOnlyList<SftTokens> _sequences;
    readonly int[][] _rows;
    readonly TuneOptions _o;
    (long Epoch, int[] Order) _perm = (-1, []);

    public TuneObjective(IReadOnlyList<SftTokens> sequences, TuneOptions options, string dataFingerprint)
    {
        _o = options.Validate();
        if (sequences.Count == 0) throw new ArgumentException("tune: no training example");
        if (sequences.FirstOrDefault(s => s.Length > _o.BlockLength + 1) is { } big)
            throw new ArgumentException($"tune: a sequence of {big.Length} tokens exceeds block_length + 1 = {_o.BlockLength + 1}; fit the data first (SftPreparation.Prepare)");
        _sequences = sequences;
        _rows = _o.Packing
            ? SftPreparation.BestFitDecreasing(sequences.Select(s => s.Length - 1).ToArray(), _o.BlockLength)
            : Enumerable.Range(0, sequences.Count).Select(i => new[] { i }).ToArray();
        Fingerprint = $"{dataFingerprint}|template={_o.Template}|block={_o.BlockLength}|packing={_o.Packing}|neftune={_o.NeftuneAlpha:R}|truncation={_o.Truncation}|val={_o.ValidationFraction:R}";
    }

    public string Kind => "tune";
    public string Fingerprint { get; }
    /// <summary>Training rows: packed bins (or one example each), in bin order; each lists sequence indices.</summary>
    public IReadOnlyList<int[]> Rows => _rows;
    /// <summary>Real positions over BlockLength × rows: 1 = no padding at all.</summary>
    public double PackingEfficiency => _sequences.Sum(s => (double)(s.Length - 1)) / ((double)_rows.Length * _o.BlockLength);

    public SftBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var rows = new IReadOnlyList<SftTokens>[config.BatchSize];
        for (int i = 0; i < config.BatchSize; i++)
        {
            var j = first + i;
            rows[i] = _rows[Order(j / _rows.Length)[(int)(j % _rows.Length)]].Select(k => _sequences[k]).ToArray();
        }
        return SftBatch.Collate(rows, _o.Packing, step, micro, device);
    }

    int[] Order(long epoch)
    {
        if (_perm.Epoch != epoch) _perm = (epoch, new Rng(Rng.Derive(_o.Train.Seed, 0x7E, epoch)).Permutation(_rows.Length));
        return _perm.Order;
    }

    public Tensor Loss(CausalLM model, SftBatch batch, MetricSink metrics) =>
        TokenLoss.SummedCrossEntropy(model, Tune.Embeddings(model, batch, model.training ? _o.NeftuneAlpha : 0, _o.Train.Seed), batch.Target, batch.Positions, batch.Mask);
}

public static class Tune
{
    /// <summary>Logits (B, T, V) of a batch; with <paramref name="neftuneAlpha"/> &gt; 0, NEFTune noise on the embeddings
    /// from a generator seeded by (seed, step, micro), so a step sees the same noise when it is run again.</summary>
    public static Tensor Logits(CausalLM model, SftBatch batch, double neftuneAlpha, long seed)
    {
        using var scope = NewDisposeScope();
        return model.ForwardEmbeddings(Embeddings(model, batch, neftuneAlpha, seed), batch.Positions, batch.Mask).MoveToOuterDisposeScope();
    }

    /// <summary>Token embeddings (B, T, C) of a batch, with NEFTune noise as <see cref="Logits"/> describes.</summary>
    public static Tensor Embeddings(CausalLM model, SftBatch batch, double neftuneAlpha, long seed)
    {
        using var scope = NewDisposeScope();
        var emb = model.Embed(batch.Input);                                                    // (B, T, C)
        if (neftuneAlpha > 0)
        {
            using var gen = new Generator(Rng.Derive(seed, 0x4E3F, batch.Step, batch.Micro), emb.device);
            var noise = rand(emb.shape, generator: gen, dtype: emb.dtype, device: emb.device) * 2 - 1;
            emb = emb + noise * batch.InvSqrtLength.to(emb.dtype) * (neftuneAlpha / Math.Sqrt(emb.shape[^1]));
        }
        return emb.MoveToOuterDisposeScope();
    }

    /// <summary>Held-out loss: summed cross-entropy over trained tokens / their count (no packing, no noise).</summary>
    public static IReadOnlyDictionary<string, double> Validate(CausalLM model, IReadOnlyList<SftTokens> sequences, int batchSize, int padId = 0)
    {
        using var noGrad = no_grad();
        double sum = 0;
        long count = 0;
        var device = model.EmbeddingWeight.device;
        for (int i = 0; i < sequences.Count; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = sequences.Skip(i).Take(batchSize).Select(s => (IReadOnlyList<SftTokens>)[s]).ToArray();
            using var batch = SftBatch.Collate(rows, packed: false, 0, 0, device, padId);
            sum += TokenLoss.SummedCrossEntropy(model.Forward(batch.Input), batch.Target).to(float64).item<double>();
            count += batch.Normalizer;
        }
        return new Dictionary<string, double> { ["val_loss"] = count > 0 ? sum / count : double.NaN, ["val_tokens"] = count };
    }

    /// <summary>Greedy answers to each example's prompt compared with its (first) answer, exactly.</summary>
    public static (int Matched, int Total) ExactMatch(CausalLM model, ITokenizer tokenizer, ChatTemplate template, IReadOnlyList<SftExample> examples, int maxNewTokens)
    {
        var matched = 0;
        foreach (var ex in examples)
        {
            var (prompt, answer) = template.PromptAndAnswer(ex, tokenizer);
            var room = Math.Min(maxNewTokens, model.Config.MaxPositionEmbeddings - prompt.Length);
            if (room <= 0) continue;
            var output = Generation.Generate(model, prompt, SamplingOptions.Greedy(room) with { StopToken = tokenizer.EosId });
            var text = tokenizer.Decode(output);
            var suffix = ex.IsConversation ? template.Assistant.Suffix : "";
            if (suffix.Length > 0 && text.EndsWith(suffix, StringComparison.Ordinal)) text = text[..^suffix.Length];
            if (output.Length > 0 && output[^1] == tokenizer.EosId && text == answer) matched++;
        }
        return (matched, examples.Count);
    }
}

/// <summary>Runs tune from the parent's checkpoint on <see cref="TuneOptions.DataPath"/>; writes tune_report.json.</summary>
public sealed class TuneExecutor : IStageExecutor
{
    public const string ReportFile = "tune_report.json";
    public string Kind => "tune";
    public Type Options => typeof(TuneOptions);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((TuneOptions)config).Validate();
        if (string.IsNullOrWhiteSpace(o.DataPath)) throw new ArgumentException($"stage '{ctx.Name}': tune needs data_path (a JSONL file of prompt/completion or messages examples)");
        var (model, tokenizer) = Checkpoint.Load(ctx.ParentAt(0), ctx.Device);
        var template = ChatTemplates.Resolve(o.Template, tokenizer);
        using (model)
        {
            if (model.Config.MaxPositionEmbeddings < o.BlockLength)
                throw new ArgumentException($"stage '{ctx.Name}': block_length {o.BlockLength} exceeds the model's max_position_embeddings {model.Config.MaxPositionEmbeddings}");
            var data = SftPreparation.Load(o.DataPath, o.ValidationFraction, ctx.Seed, template, tokenizer, o.BlockLength, o.Truncation);
            var (sha, train, val) = (data.Sha256, data.Train, data.Validation);
            var trainConfig = o.Train with { Seed = ctx.Seed };
            var objective = new TuneObjective(train.Sequences, o with { Train = trainConfig }, sha);
            var report = new JsonObject
            {
                ["data_path"] = o.DataPath, ["data_sha256"] = sha, ["template"] = template.Name,
                ["examples_read"] = data.ExamplesRead, ["train_examples"] = train.Sequences.Count, ["validation_examples"] = val.Sequences.Count,
                ["truncated"] = train.Truncated + val.Truncated, ["dropped"] = train.Dropped + val.Dropped,
                ["trained_tokens"] = train.TrainedTokens, ["packed_sequences"] = objective.Rows.Count,
                ["packing_efficiency"] = objective.PackingEfficiency,
            };
            Directory.CreateDirectory(ctx.Directory);
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            ctx.Log.WriteLine($"{ctx.Name}: {train.Sequences.Count} train / {val.Sequences.Count} validation examples, {train.Truncated + val.Truncated} truncated, " +
                              $"{train.Dropped + val.Dropped} dropped; {objective.Rows.Count} rows, packing efficiency {objective.PackingEfficiency:P1}");
            Func<CausalLM, IReadOnlyDictionary<string, double>>? validate =
                val.Sequences.Count > 0 ? m => Tune.Validate(m, val.Sequences, trainConfig.BatchSize, tokenizer.PadId) : null;
            return Trainer.Run(model, tokenizer, objective, trainConfig, ctx.Directory, validate, ctx.Log, ctx.ParentAt(0)).LastMetrics;
        }
    }
}
