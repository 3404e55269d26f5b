using Research.Cluster;
using Research.Runs;

namespace Research.Cli.Commands;

/// <summary><c>research watch SWEEP [--once]</c> and <c>research resubmit SWEEP [--wait]</c>: sweeps submitted to Slurm.</summary>
public static class ClusterCommand
{
    public static int Watch(CliArgs a)
    {
        using var store = RunsCommand.Open(a);
        var id = Sweep(store, a);
        if (a.Flags.Contains("once"))
        {
            foreach (var (e, s) in SlurmSubmitter.Refresh(store, id))
                Console.WriteLine($"point {e.Point,-4} job {e.JobId ?? "-",-12} {SlurmSubmitter.Describe(e, s)}{(e.RunId is long r ? $"  run {r}" : "")}");
            return 0;
        }
        var elements = SlurmSubmitter.Watch(store, id, Console.Out, a.GetDouble("poll", 2));
        return elements.All(e => e.Done) ? 0 : 1;
    }

    public static int Resubmit(CliArgs a)
    {
        using var store = RunsCommand.Open(a);
        var id = Sweep(store, a);
        var job = SlurmSubmitter.Resubmit(store, id, Console.Out);
        if (job is null || !a.Flags.Contains("wait")) return 0;
        var elements = SlurmSubmitter.Watch(store, id, Console.Out, a.GetDouble("poll", 2));
        return elements.All(e => e.Done) ? 0 : 1;
    }

    static long Sweep(RunStore store, CliArgs a)
    {
        if (a.Positional.Count == 0) throw new CliException("which sweep? give its id (see `research runs`)");
        var text = a.Positional[0];
        if (!long.TryParse(text, out var id)) throw new CliException($"'{text}' is not a sweep id (see `research runs`)");
        if (store.Submission(id) is null) throw new CliException($"no sweep {id} in {store.Path} (see `research runs`)");
        return id;
    }
}
