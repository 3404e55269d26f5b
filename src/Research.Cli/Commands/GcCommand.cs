using Research.Pipelines;
using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>
/// research gc [--dry-run]: removes node directories (checkpoints) that no recorded run references. A node is removed
/// only while gc holds its lock file (<see cref="NodeLock"/>), so a stage another process is running (it holds the
/// lock, and the store references it from the moment it starts) is skipped, and one that starts meanwhile waits.
/// </summary>
public static class GcCommand
{
    public static int Execute(CliArgs a)
    {
        var nodes = Path.Combine(a.Workspace, Executor.NodesDir);
        if (!Directory.Exists(nodes)) { Console.WriteLine($"nothing to collect in {a.Workspace}"); return 0; }
        using var store = RunsCommand.Open(a);
        var referenced = Referenced(store);
        var dry = a.Flags.Contains("dry-run");
        long freed = 0;
        var count = 0;
        foreach (var dir in Directory.GetDirectories(nodes).Order(StringComparer.Ordinal))
        {
            if (referenced.Contains(Path.GetFullPath(dir))) continue;
            using var held = NodeLock.TryAcquire(NodeLock.PathOf(dir));
            // A run that took the lock and was recorded after the store was first read references the node by now.
            if (held is null) { Console.WriteLine($"skipping {dir}: a process is running this stage"); continue; }
            if (Referenced(store).Contains(Path.GetFullPath(dir))) continue;
            var bytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Console.WriteLine($"{(dry ? "would remove" : "removing")} {dir} ({bytes / 1e6:F1} MB)");
            // The lock file stays: removing it while another process may have it open would let two processes hold "the" lock.
            if (!dry) Directory.Delete(dir, recursive: true);
            freed += bytes;
            count++;
        }
        Console.WriteLine($"{(dry ? "would free" : "freed")} {freed / 1e6:F1} MB in {count} node director{(count == 1 ? "y" : "ies")}");
        return 0;
    }

    static HashSet<string> Referenced(RunStore store) =>
        store.ReferencedCheckpoints().Select(c => Path.GetFullPath(Path.GetDirectoryName(c)!)).ToHashSet();
}
