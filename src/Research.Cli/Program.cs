using Research.Cli.Commands;

namespace Research.Cli;

public static class Program
{
    const string Help = """
        research: domain-adaptive post-training experiments

        commands:
          quickstart              pretrain -> adapt (with / without replay) -> tune -> align a tiny model on the default world; capability report
          run SCRIPT.fsx [ARGS]   run an F# script with the Research assemblies referenced
          runs [--json]           list runs with their stages (key, kind, status, final metrics)
          show RUN [--json]       one run: stages, configs, metrics, evaluations
          compare RUN RUN         two runs' metrics side by side
          gc [--dry-run]          remove node checkpoints that no recorded run references (skips stages that are running)
          inspect DIR [--json]    a checkpoint's family, parameters, dtype, vocabulary, special tokens, chat template
          generate DIR --prompt TEXT [--chat] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--max-new-tokens N] [--json]
          eval DIR [--text FILE] [--mc FILE.jsonl] [--capabilities] [--json]  perplexity, bits per byte, multiple choice, the capability suites
          merge CONFIG [--out DIR] merge checkpoints (mergekit-like YAML or JSON config), streaming
          bench [--json] [--quick] [--no-peer] [--bf16 always]  our loop against a hand-written one and PyTorch, MFU, memory, merge bandwidth, Qwen3 shape
          bench --vocab-memory [--seq N] peak RSS of one SFT step of a Qwen3-0.6B-shaped model, full vs chunked loss
          doctor                  show how torch was started (backend, device, threads)
          report RUN|EXPERIMENT [--out DIR] [--paper]  figures (HTML, PNG, SVG, PDF) and LaTeX/Markdown tables of runs, over seeds
          export [runs|stages|metrics|evaluations] --format csv|jsonl|parquet [--out FILE]  a table of the run store, with provenance
          provenance FILE [--data NAME=PATH]  an export's manifest; whether this code and data would produce its stages again
          watch SWEEP [--once]    follow a sweep submitted with `run --on slurm` (elements, job ids, states)
          resubmit SWEEP [--wait] submit again only the failed points of a Slurm sweep

        `run --on slurm` submits a script's sweep as one Slurm job array (see docs/cluster.md);
        --store CONN (or $RESEARCH_STORE) records runs in PostgreSQL instead of the workspace's SQLite file.

        every command takes --workspace DIR (default ./runs, or $RESEARCH_WORKSPACE); --opt=value is --opt value,
        a flag takes --flag=true|false, and an option a command does not know is an error
        """;

    public static int Main(string[] args)
    {
        try
        {
            if (args.Length == 0 || args[0] is "help" or "--help" or "-h") { Console.WriteLine(Help); return 0; }
            Research.Backend.TorchRuntime.EnsureStarted();
            return args[0] switch
            {
                "quickstart" => QuickstartCommand.Execute(CliArgs.Parse(args.Skip(1), [], QuickstartCommand.Options)),
                "run" => RunCommand.Execute(args),
                "runs" => RunsCommand.List(CliArgs.Parse(args.Skip(1), ["json"])),
                "show" => RunsCommand.Show(CliArgs.Parse(args.Skip(1), ["json"])),
                "compare" => RunsCommand.Compare(CliArgs.Parse(args.Skip(1), [])),
                "gc" => GcCommand.Execute(CliArgs.Parse(args.Skip(1), ["dry-run"])),
                "merge" => MergeCommand.Execute(args),
                "inspect" => ModelCommands.Inspect(CliArgs.Parse(args.Skip(1), ["json"])),
                "generate" => ModelCommands.Generate(CliArgs.Parse(args.Skip(1), ["json", "chat"], ModelCommands.GenerateOptions)),
                "eval" => ModelCommands.Evaluate(CliArgs.Parse(args.Skip(1), ["json", "capabilities"], ModelCommands.EvalOptions)),
                "bench" => BenchCommand.Execute(CliArgs.Parse(args.Skip(1), ["json", "quick", "vocab-memory", "no-peer"], BenchCommand.Options)),
                "doctor" => Doctor(),
                "export" => ExportCommand.Execute(CliArgs.Parse(args.Skip(1), [], ExportCommand.Options)),
                "provenance" => ProvenanceCommand.Execute(CliArgs.Parse(args.Skip(1), [], ProvenanceCommand.Options)),
                "report" => ReportCommand.Execute(CliArgs.Parse(args.Skip(1), ReportCommand.Flags, ReportCommand.Options)),
                "watch" => ClusterCommand.Watch(CliArgs.Parse(args.Skip(1), ["once"], "poll")),
                "resubmit" => ClusterCommand.Resubmit(CliArgs.Parse(args.Skip(1), ["wait"], "poll")),
                _ => throw new CliException($"unknown command '{args[0]}'\n\n{Help}"),
            };
        }
        catch (Exception e)
        {
            // An expected failure is one line and exit 1 or 2 (CliErrors); anything else is a bug and keeps its stack trace.
            if (CliErrors.Report(e, Console.Error) is not { } code) throw;
            return code;
        }
    }

    static int Doctor()
    {
        Console.WriteLine($"torch start-up: {Research.Backend.TorchRuntime.Report}");
        Console.WriteLine($"allocator: {Research.Backend.NativeAllocator.Report}");
        Console.WriteLine($"device (auto): {Research.Backend.Devices.Choose()}; cuda available: {TorchSharp.torch.cuda.is_available()}");
        Console.WriteLine($"threads: {TorchSharp.torch.get_num_threads()}");
        return 0;
    }
}
