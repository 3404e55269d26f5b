using System.Globalization;
using System.Text;
using Research.Data.Synthetic;
using Research.Stages;

namespace Research.Pipelines;

/// <summary>Sizes of the quick-start experiment; defaults finish in a few minutes on two CPU cores.</summary>
public sealed record QuickStartOptions
{
    public int Seed { get; init; } = 7;
    /// <summary>General documents: the world's one size parameter (half as many domain documents, size / 150 companies).</summary>
    public int GeneralDocuments { get; init; } = 3000;
    public int PretrainSteps { get; init; } = 500;
    public int AdaptSteps { get; init; } = 200;
    /// <summary>Supervised steps on the world's instructions, from the replay branch.</summary>
    public int TuneSteps { get; init; } = 120;
    /// <summary>DPO steps on the world's preference pairs, from the tuned model.</summary>
    public int AlignSteps { get; init; } = 40;
    /// <summary>Resumable checkpoints during adapt, every this many steps.</summary>
    public int CheckpointEvery { get; init; } = 40;
    /// <summary>The replayed share of general text in the second adapt run.</summary>
    public double Replay { get; init; } = 0.1;
    /// <summary>Where the world's files are written (tune and align read them); null = a folder named by size and seed under the temp directory.</summary>
    public string? WorldDirectory { get; init; }

    public string WorldPath => WorldDirectory ?? Path.Combine(Path.GetTempPath(), "research-world", $"size{GeneralDocuments}-seed{Seed}");
}

public sealed record QuickStartRow(string Model, string Checkpoint, double DomainPerplexity, double GeneralPerplexity, double DomainBitsPerByte, double GeneralBitsPerByte);

public sealed record QuickStartReport(IReadOnlyList<QuickStartRow> Rows, ExperimentResult Result)
{
    public QuickStartRow Pretrained => Rows[0];
    public QuickStartRow NoReplay => Rows[1];
    public QuickStartRow WithReplay => Rows[2];
    public CapabilityReport Capabilities => CapabilityReport.From(Result);
    string[] Stages => Capabilities.Stages.ToArray();   // pretrain, adapt-no-replay, adapt-replay-*, tune, align
    double Cap(string suite, string metric, int stage) => Capabilities.Value(suite, metric, Stages[stage]);

    public bool DomainImproved => NoReplay.DomainPerplexity < Pretrained.DomainPerplexity && WithReplay.DomainPerplexity < Pretrained.DomainPerplexity;
    public bool ReplayForgetsLess => WithReplay.GeneralPerplexity - Pretrained.GeneralPerplexity < NoReplay.GeneralPerplexity - Pretrained.GeneralPerplexity;
    /// <summary>Adapt (without replay: the purest domain run) knows more test-company facts than the pretrained base.</summary>
    public bool AdaptRaisesKnowledge => Cap("domain_knowledge", "acc", 1) > Cap("domain_knowledge", "acc", 0);
    /// <summary>Tune follows more format instructions than the model it started from (adapt with replay).</summary>
    public bool TuneRaisesInstructionFollowing => Cap("instruction_following", "acc", 3) > Cap("instruction_following", "acc", 2);
    /// <summary>Align prefers more held-out chosen answers than the tuned model it started from.</summary>
    public bool AlignRaisesPreferenceAccuracy => Cap("preference", "acc", 4) > Cap("preference", "acc", 3);
    public bool AllDirectionsHold => DomainImproved && ReplayForgetsLess && AdaptRaisesKnowledge && TuneRaisesInstructionFollowing && AlignRaisesPreferenceAccuracy;

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

    /// <summary>The four capability directions the quick start is meant to show, each yes/NO.</summary>
    public string Checks() =>
        $"adapt raises domain knowledge over the base: {(AdaptRaisesKnowledge ? "yes" : "NO")}\n" +
        $"tune raises instruction following: {(TuneRaisesInstructionFollowing ? "yes" : "NO")}\n" +
        $"align raises preference accuracy: {(AlignRaisesPreferenceAccuracy ? "yes" : "NO")}\n" +
        $"replay keeps more general retention (perplexity) than no replay: {(ReplayForgetsLess ? "yes" : "NO")}\n";
}

/// <summary>Reads a quick-start result (the experiment is defined once, in the F# DSL: <c>Experiment.quickStart</c>).</summary>
public static class QuickStart
{
    /// <summary>The perplexities and capabilities, from the evaluations of the first run of a quick-start result.</summary>
    public static QuickStartReport Report(ExperimentResult result)
    {
        var run = result.Runs[0];
        QuickStartRow Row(string label, NodeResult n) => new(label, n.Checkpoint,
            n.Evaluations["domain"]["perplexity"], n.Evaluations["general_retention"]["perplexity"],
            n.Evaluations["domain"]["bits_per_byte"], n.Evaluations["general_retention"]["bits_per_byte"]);
        var adapts = run.Nodes.Where(n => n.Kind == "adapt").ToArray();
        return new QuickStartReport(
            [Row("pretrained (general only)", run.Node("pretrain")), Row("adapt, no replay", adapts[0]), Row(adapts[1].Name.Replace("adapt-replay-", "adapt, replay "), adapts[1])],
            result);
    }
}
