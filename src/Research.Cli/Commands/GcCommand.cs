using Research.Pipelines;
using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>research gc [--dry-run]: removes node directories (checkpoints) that no recorded run references.</summary>
public static class GcCommand
{
    public static int Execute(CliArgs a)
    {
        var nodes = Path.Combine(a.Workspace, Executor.NodesDir);
        if (!Directory.Exists(nodes)) { Console.WriteLine($"nothing to collect in {a.Workspace}"); return 0; }
        using var store = new RunStore(a.Workspace);
        var referenced = store.ReferencedCheckpoints().Select(c => Path.GetFullPath(Path.GetDirectoryName(c)!)).ToHashSet();
        var dry = a.Flags.Contains("dry-run");
        long freed = 0;
        var count = 0;
        foreach (var dir in Directory.GetDirectories(nodes).Order(StringComparer.Ordinal))
        {
            if (referenced.Contains(Path.GetFullPath(dir))) continue;
            var bytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            Console.WriteLine($"{(dry ? "would remove" : "removing")} {dir} ({bytes / 1e6:F1} MB)");
            if (!dry)
            {
                Directory.Delete(dir, recursive: true);
                var lockFile = dir + ".lock";
                if (File.Exists(lockFile)) File.Delete(lockFile);
            }
            freed += bytes;
            count++;
        }
        Console.WriteLine($"{(dry ? "would free" : "freed")} {freed / 1e6:F1} MB in {count} node director{(count == 1 ? "y" : "ies")}");
        return 0;
    }
}
