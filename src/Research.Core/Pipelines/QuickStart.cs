using System.Globalization;
using System.Text;
using Research.Data.Synthetic;
using Research.Stages;

namespace Research.Pipelines;

/// <summary>Sizes of the quick-start experiment; defaults finish in a few minutes on two CPU cores.</summary>
public sealed record QuickStartOptions
{
    public int Seed { get; init; } = 7;
    /// <summary>General documents; the finance domain gets half as many.</summary>
    public int GeneralDocuments { get; init; } = 3000;
    public int PretrainSteps { get; init; } = 500;
    public int AdaptSteps { get; init; } = 200;
    /// <summary>Resumable checkpoints during adapt, every this many steps.</summary>
    public int CheckpointEvery { get; init; } = 40;
    /// <summary>The replayed share of general text in the second adapt run.</summary>
    public double Replay { get; init; } = 0.1;
}

public sealed record QuickStartRow(string Model, string Checkpoint, double DomainPerplexity, double GeneralPerplexity, double DomainBitsPerByte, double GeneralBitsPerByte);

public sealed record QuickStartReport(IReadOnlyList<QuickStartRow> Rows, ExperimentResult Result)
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
/// The quick start, written with the C# API (scripts/quickstart.fsx is the same experiment in the DSL):
/// pretrain a tiny model on general text, adapt it to a finance domain with and without replay,
/// and evaluate domain and general perplexity after every stage.
/// </summary>
public static class QuickStart
{
    public static Experiment Build(QuickStartOptions o)
    {
        var general = DataSource.FromDocuments("general", () => QuickWorld.General(o.GeneralDocuments, o.Seed));
        var finance = DataSource.FromDocuments("finance", () => QuickWorld.Finance(Math.Max(1, o.GeneralDocuments / 2), o.Seed));
        var pretrainDefaults = new PretrainConfig();
        var pretrain = new Stage("pretrain", "pretrain", pretrainDefaults with { Train = pretrainDefaults.Train with { Steps = o.PretrainSteps } }, [], [general]);
        var adaptDefaults = new AdaptOptions();
        Stage Adapt(string name, double replay) => new("adapt", name, adaptDefaults with
        {
            Replay = replay,
            Train = adaptDefaults.Train with { Steps = o.AdaptSteps, CheckpointEvery = o.CheckpointEvery },
        }, [pretrain], [finance, general]);
        return Experiment.Create("quickstart", Adapt("adapt-no-replay", 0), Adapt($"adapt-replay-{o.Replay.ToString(CultureInfo.InvariantCulture)}", o.Replay))
            .WithSeed(o.Seed)
            .Evaluate(new PerplexitySuite("finance", finance, adaptDefaults.ValidationFraction, o.Seed, adaptDefaults.BlockLength),
                      new PerplexitySuite("general", general, adaptDefaults.ValidationFraction, o.Seed, adaptDefaults.BlockLength));
    }

    public static QuickStartReport Run(QuickStartOptions o, ExecutorOptions executor)
    {
        var result = new Executor(executor).Run(Build(o));
        return Report(result);
    }

    /// <summary>The table of perplexities, from the evaluations of the first run of a quick-start result.</summary>
    public static QuickStartReport Report(ExperimentResult result)
    {
        var run = result.Runs[0];
        QuickStartRow Row(string label, NodeResult n) => new(label, n.Checkpoint,
            n.Evaluations["finance"]["perplexity"], n.Evaluations["general"]["perplexity"],
            n.Evaluations["finance"]["bits_per_byte"], n.Evaluations["general"]["bits_per_byte"]);
        var adapts = run.Nodes.Where(n => n.Kind == "adapt").ToArray();
        return new QuickStartReport(
            [Row("pretrained (general only)", run.Node("pretrain")), Row("adapt, no replay", adapts[0]), Row(adapts[1].Name.Replace("adapt-replay-", "adapt, replay "), adapts[1])],
            result);
    }

}
