using Research.Backend;

namespace Research.Cli.Commands;

/// <summary>
/// research quickstart: runs scripts/quickstart.fsx (shipped next to the CLI) with the Research
/// assemblies referenced: pretrain, adapt with and without replay, tune, align, print the capability report.
/// </summary>
public static class QuickstartCommand
{
    public const string Usage = "research quickstart [--workspace DIR] [--seed N] [--pretrain-steps N] [--adapt-steps N] [--tune-steps N] [--align-steps N] [--replay F] [--general-docs N] [--device cpu|cuda] [--threads N]";
    /// <summary>The options quickstart takes: the script's, and the device and threads.</summary>
    public static string[] Options => [.. ScriptOptions, "device", "threads"];

    static readonly string[] ScriptOptions = ["seed", "pretrain-steps", "adapt-steps", "tune-steps", "align-steps", "replay", "general-docs", "checkpoint-every"];

    public static int Execute(CliArgs a)
    {
        foreach (var key in a.Options.Keys)
            if (!ScriptOptions.Contains(key) && key is not ("workspace" or "device" or "threads"))
                throw new CliException($"quickstart: unknown option --{key}\nusage: {Usage}");
        Devices.SetThreads(a.GetInt("threads", 0));
        if (a.Get("device") is { } device) Environment.SetEnvironmentVariable("RESEARCH_DEVICE", device);
        Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", a.Workspace);
        var script = Path.Combine(AppContext.BaseDirectory, "scripts", "quickstart.fsx");
        if (!File.Exists(script)) throw new CliException($"{script} is missing from this build (it is copied from scripts/ at build time)");
        Console.WriteLine($"quickstart: workspace {a.Workspace}, device {Devices.Choose(a.Get("device"))}, threads {TorchSharp.torch.get_num_threads()}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var args = ScriptOptions.Where(a.Options.ContainsKey).SelectMany(k => new[] { "--" + k, a.Options[k] }).ToArray();
        var code = ScriptHost.Run(script, args, Console.Out, Console.Error);
        Console.WriteLine($"finished in {clock.Elapsed.TotalSeconds:F1} s");
        return code;
    }
}
