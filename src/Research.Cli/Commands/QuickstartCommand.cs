using Research.Backend;
using Research.Pipelines;

namespace Research.Cli.Commands;

/// <summary>research quickstart: pretrain, adapt with and without replay, print perplexities.</summary>
public static class QuickstartCommand
{
    public const string Usage = "research quickstart [--workspace DIR] [--seed N] [--pretrain-steps N] [--adapt-steps N] [--replay F] [--device cpu|cuda] [--threads N]";

    public static int Execute(CliArgs a)
    {
        Devices.SetThreads(a.GetInt("threads", 0));
        var defaults = new QuickStartOptions();
        var options = defaults with
        {
            Seed = a.GetInt("seed", defaults.Seed),
            PretrainSteps = a.GetInt("pretrain-steps", defaults.PretrainSteps),
            AdaptSteps = a.GetInt("adapt-steps", defaults.AdaptSteps),
            Replay = a.GetDouble("replay", defaults.Replay),
            GeneralDocuments = a.GetInt("general-docs", defaults.GeneralDocuments),
            DomainDocuments = a.GetInt("domain-docs", defaults.DomainDocuments),
            Device = a.Get("device"),
        };
        var workspace = a.Workspace;
        Console.WriteLine($"quickstart: workspace {workspace}, seed {options.Seed}, device {Devices.Choose(options.Device)}, threads {TorchSharp.torch.get_num_threads()}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var report = QuickStart.Run(workspace, options, Console.Out);
        Console.WriteLine();
        Console.Write(report.Table());
        foreach (var s in report.Stages)
            Console.WriteLine($"{s.Name}: {s.Status}; checkpoint {s.Checkpoint}; metrics {Path.Combine(s.Directory, Training.Trainer.MetricsFile)}");
        Console.WriteLine($"finished in {clock.Elapsed.TotalSeconds:F0} s");
        return report.DomainImproved && report.ReplayForgetsLess ? 0 : 3;
    }
}
