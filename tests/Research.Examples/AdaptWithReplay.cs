using Research.Data.Synthetic;
using Research.Pipelines;
using Research.Stages;

namespace Research.Examples;

/// <summary>docs/dsl.md, "The same experiment in C#": the text between the markers is the docs' code block.</summary>
public static class AdaptWithReplay
{
    public static ExperimentResult Run(string workspace)
    {
        // docs:begin
        var general = DataSource.FromDocuments("general", () => QuickWorld.General(200, 1));
        var finance = DataSource.FromDocuments("finance", () => QuickWorld.Finance(100, 1));

        var pretrainDefaults = new PretrainConfig();
        var start = new Stage("pretrain",
            pretrainDefaults with { Train = pretrainDefaults.Train with { Steps = 20 } }, [], [general]);

        var adaptDefaults = new AdaptOptions();
        Stage Adapt(double replay) => new("adapt",
            adaptDefaults with { Replay = replay, Train = adaptDefaults.Train with { Steps = 20 } }, [start], [finance, general]);

        // One point per replay share; the pretrain stage they share runs once.
        var experiment = Experiment.Sweep("dsl-example", [("replay", [0.0, 0.25])], p => [Adapt(p["replay"])])
            .WithSeed(1)
            .Evaluate(new PerplexitySuite("finance", finance, 0.04, 1, 128),
                      new PerplexitySuite("general", general, 0.04, 1, 128));

        var result = new Executor(new ExecutorOptions { Workspace = workspace }).Run(experiment);
        foreach (var run in result.Runs)
            foreach (var node in run.Nodes)
                Console.WriteLine($"{run.Point.Label} {node.Name}: finance ppl {node.Evaluations["finance"]["perplexity"]:F2}");
        // docs:end
        return result;
    }
}
