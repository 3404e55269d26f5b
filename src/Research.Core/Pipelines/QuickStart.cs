using System.Globalization;
using System.Text;
using System.Text.Json;
using Research.Backend;
using Research.Data;
using Research.Data.Synthetic;
using Research.Eval;
using Research.Models;
using Research.Runs;
using Research.Stages;
using Research.Training;
using TorchSharp;

namespace Research.Pipelines;

/// <summary>Sizes of the quick-start experiment; defaults finish in a few minutes on two CPU cores.</summary>
public sealed record QuickStartOptions
{
    public int Seed { get; init; } = 7;
    public int GeneralDocuments { get; init; } = 3000;
    public int DomainDocuments { get; init; } = 1500;
    public double ValidationFraction { get; init; } = 0.04;
    public int BlockLength { get; init; } = 128;
    public int BatchSize { get; init; } = 16;
    public int PretrainSteps { get; init; } = 500;
    public int AdaptSteps { get; init; } = 200;
    /// <summary>The replayed share of general text in the second adapt run.</summary>
    public double Replay { get; init; } = 0.1;
    public LlamaConfig Model { get; init; } = LlamaConfig.Tiny();
    public string? Device { get; init; }
}

public sealed record QuickStartRow(string Model, string Checkpoint, double DomainPerplexity, double GeneralPerplexity, double DomainBitsPerByte, double GeneralBitsPerByte);

public sealed record QuickStartReport(IReadOnlyList<QuickStartRow> Rows, IReadOnlyList<StageOutcome> Stages)
{
    public QuickStartRow Pretrained => Rows[0];
    public QuickStartRow NoReplay => Rows[1];
    public QuickStartRow WithReplay => Rows[2];
    public bool DomainImproved => NoReplay.DomainPerplexity < Pretrained.DomainPerplexity && WithReplay.DomainPerplexity < Pretrained.DomainPerplexity;
    public bool ReplayForgetsLess => WithReplay.GeneralPerplexity - Pretrained.GeneralPerplexity < NoReplay.GeneralPerplexity - Pretrained.GeneralPerplexity;

    public string Table()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"{"model",-28} {"domain ppl",11} {"general ppl",12} {"domain bpb",11} {"general bpb",12}");
        foreach (var r in Rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{r.Model,-28} {r.DomainPerplexity,11:F3} {r.GeneralPerplexity,12:F3} {r.DomainBitsPerByte,11:F4} {r.GeneralBitsPerByte,12:F4}"));
        sb.AppendLine($"domain perplexity fell after adapt: {(DomainImproved ? "yes" : "NO")}");
        sb.AppendLine($"general perplexity rose less with replay than without: {(ReplayForgetsLess ? "yes" : "NO")}");
        return sb.ToString();
    }
}

/// <summary>
/// The quick start: pretrain a tiny model on general text, adapt it to a finance domain with and
/// without replay, and measure domain and general perplexity before and after.
/// </summary>
public static class QuickStart
{
    public static QuickStartReport Run(string workspace, QuickStartOptions o, TextWriter log)
    {
        var root = Path.Combine(workspace, "quickstart");
        var stagesRoot = Path.Combine(root, "stages");
        var device = Devices.Choose(o.Device);
        var tokenizer = new ByteTokenizer();

        var general = new Corpus("general", QuickWorld.General(o.GeneralDocuments, o.Seed));
        var domain = new Corpus("finance", QuickWorld.Finance(o.DomainDocuments, o.Seed));
        var (generalTrain, generalVal) = general.Split(o.ValidationFraction, o.Seed);
        var (domainTrain, domainVal) = domain.Split(o.ValidationFraction, o.Seed);
        var generalBlocks = Packing.Pack(generalTrain, tokenizer, o.BlockLength);
        var domainBlocks = Packing.Pack(domainTrain, tokenizer, o.BlockLength);
        log.WriteLine($"data: {generalBlocks} | {domainBlocks}");

        IReadOnlyDictionary<string, double> Validate(LlamaForCausalLM m)
        {
            var d = Perplexity.Evaluate(m, tokenizer, domainVal.Documents, "finance", o.BlockLength);
            var g = Perplexity.Evaluate(m, tokenizer, generalVal.Documents, "general", o.BlockLength);
            return d.ToMetrics("val_finance_").Concat(g.ToMetrics("val_general_")).ToDictionary();
        }

        var stages = new List<StageOutcome>();
        var pretrainConfig = new TrainConfig
        {
            Steps = o.PretrainSteps, BatchSize = o.BatchSize, LearningRate = 2e-3, WarmupSteps = Math.Max(1, o.PretrainSteps / 20),
            LogEvery = 10, EvalEvery = Round(o.PretrainSteps / 2, 10), CheckpointEvery = Round(o.PretrainSteps / 4, 10), Seed = o.Seed,
        };
        var pretrainKey = StageRunner.Key("pretrain", o.Model.ToJson(), JsonSerializer.Serialize(pretrainConfig), general.Fingerprint, o.ValidationFraction.ToString("R"), o.BlockLength.ToString());
        var pretrain = StageRunner.Run(stagesRoot, "pretrain", pretrainKey, dir =>
        {
            using var model = new LlamaForCausalLM(o.Model with { MaxPositionEmbeddings = Math.Max(o.Model.MaxPositionEmbeddings, o.BlockLength) }, o.Seed);
            model.to(device);
            log.WriteLine($"pretrain: {model.ParameterCount():N0} parameters, {o.PretrainSteps} steps of {o.BatchSize} x {o.BlockLength} tokens");
            return Trainer.Run(model, tokenizer, Adapt.Pretrain(generalBlocks, pretrainConfig, general.Fingerprint), pretrainConfig, dir, Validate, log);
        }, log);
        stages.Add(pretrain);

        StageOutcome AdaptRun(string name, double replay)
        {
            var options = new AdaptOptions
            {
                Replay = replay, BlockLength = o.BlockLength,
                Train = new TrainConfig
                {
                    Steps = o.AdaptSteps, BatchSize = o.BatchSize, LearningRate = 1e-3, WarmupSteps = Math.Max(1, o.AdaptSteps / 20),
                    LogEvery = 10, EvalEvery = Round(o.AdaptSteps / 2, 10), CheckpointEvery = Round(o.AdaptSteps / 5, 10), Seed = o.Seed,
                },
            };
            var key = StageRunner.Key("adapt", pretrain.Key, JsonSerializer.Serialize(options), domain.Fingerprint, general.Fingerprint);
            return StageRunner.Run(stagesRoot, name, key, dir =>
            {
                var (model, _) = Checkpoint.Load(pretrain.Checkpoint, device);
                using (model)
                {
                    var objective = Adapt.Objective(domainBlocks, generalBlocks, options, domain.Fingerprint + general.Fingerprint);
                    return Trainer.Run(model, tokenizer, objective, options.Train, dir, Validate, log);
                }
            }, log);
        }
        var noReplay = AdaptRun("adapt-no-replay", 0.0);
        var withReplay = AdaptRun($"adapt-replay-{o.Replay.ToString(CultureInfo.InvariantCulture)}", o.Replay);
        stages.Add(noReplay);
        stages.Add(withReplay);

        QuickStartRow Row(string label, StageOutcome s)
        {
            var (m, _) = Checkpoint.Load(s.Checkpoint, device);
            using (m)
            {
                var d = Perplexity.Evaluate(m, tokenizer, domainVal.Documents, "finance", o.BlockLength);
                var g = Perplexity.Evaluate(m, tokenizer, generalVal.Documents, "general", o.BlockLength);
                return new QuickStartRow(label, s.Checkpoint, d.Perplexity, g.Perplexity, d.BitsPerByte, g.BitsPerByte);
            }
        }
        var report = new QuickStartReport(
            [Row("pretrained (general only)", pretrain), Row("adapt, no replay", noReplay), Row($"adapt, replay {o.Replay}", withReplay)],
            stages);
        AtomicFile.WriteAllText(Path.Combine(root, "results.json"), JsonSerializer.Serialize(new { rows = report.Rows, stages = report.Stages }, new JsonSerializerOptions { WriteIndented = true }));
        return report;
    }

    static int Round(int value, int multiple) => Math.Max(multiple, value / multiple * multiple);
}
