using Research.Data;
using Research.Models;
using Research.Training;
using TorchSharp;

namespace Research.Stages;

/// <summary>pretrain: a model from scratch, language modelling on one corpus.</summary>
public sealed partial record PretrainConfig : IReadsFiles
{
    public ModelConfig Model { get; init; } = ModelConfig.Tiny();
    /// <summary>
    /// "byte" (default for tiny models), "gpt2", or the path of a Hugging Face tokenizer directory (tokenizer.json +
    /// tokenizer_config.json, e.g. a model's own): the model gets its vocabulary and special ids, and every checkpoint of the
    /// pipeline carries the files (chat_template included), so later stages can render through the model's template.
    /// </summary>
    public string Tokenizer { get; init; } = "byte";

    /// <summary>The tokenizer files' content when <see cref="Tokenizer"/> is a directory: edited files re-run the stage.</summary>
    public string FilesFingerprint() => Tokenizers.IsName(Tokenizer) ? ""
        : string.Join("|", HfTokenizer.Files.Select(f => Path.Combine(Tokenizer, f)).Where(File.Exists).Select(f => $"{Path.GetFileName(f)}={SftData.FileFingerprint(f)}"));
    public int BlockLength { get; init; } = 128;
    /// <summary>Share of documents held out for validation (seeded, by document).</summary>
    public double ValidationFraction { get; init; } = 0.04;
    public TrainConfig Train { get; init; } = new() { Steps = 500, LearningRate = 2e-3, WarmupSteps = 25, EvalEvery = 250, CheckpointEvery = 100 };
}

public sealed class PretrainExecutor : IStageExecutor
{
    public string Kind => "pretrain";
    public Type Options => typeof(PretrainConfig);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var c = (PretrainConfig)config;
        var tokenizer = Tokenizers.ByNameOrDirectory(c.Tokenizer);
        var corpus = ctx.DataAt(0, "a corpus");
        var (train, val) = c.ValidationFraction > 0 ? corpus.Split(c.ValidationFraction, (int)ctx.Seed) : (corpus, new Corpus(corpus.Name, []));
        var blocks = Packing.Pack(train, tokenizer, c.BlockLength);
        var modelConfig = c.Model with
        {
            VocabSize = tokenizer.VocabSize, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId, PadTokenId = tokenizer.PadId,
            MaxPositionEmbeddings = Math.Max(c.Model.MaxPositionEmbeddings, c.BlockLength),
        };
        using var model = new CausalLM(modelConfig, ctx.Seed);
        model.to(ctx.Device);
        ctx.Log.WriteLine($"{ctx.Name}: {model.ParameterCount():N0} parameters; {blocks}");
        var train_ = c.Train with { Seed = ctx.Seed };
        var objective = Adapt.Pretrain(blocks, train_, corpus.Fingerprint);
        return Trainer.Run(model, tokenizer, objective, train_, ctx.Directory, LmValidation.On(tokenizer, c.BlockLength, (corpus.Name, val)), ctx.Log).LastMetrics;
    }
}
