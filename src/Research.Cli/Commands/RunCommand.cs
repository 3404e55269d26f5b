using Research.Cluster;
using Research.Pipelines;

namespace Research.Cli.Commands;

/// <summary>
/// <c>research run [OPTIONS] SCRIPT.fsx [script args...]</c>: options before the script path belong to
/// <c>run</c>; everything after it belongs to the script (its <c>fsi.CommandLineArgs</c>). The options reach
/// the script's <c>Experiment.run</c> through <see cref="ExecutorOptions.Hosted"/>.
/// </summary>
public static class RunCommand
{
    public const string Usage = """
        usage: research run [--workspace DIR] [--store CONN] [--watch] [--on local|slurm] [SLURM OPTIONS] [--point K] SCRIPT.fsx [script args...]
          --watch               run again each time the script is saved, in one warm compiler session (Ctrl+C stops);
                                finished stages are reused, so a re-run of an unchanged experiment takes seconds
          --on slurm            submit the script's sweep as one Slurm job array (one element per sweep point)
          --partition P  --time T (default 04:00:00)  --cpus-per-task N (default 2)  --gpus-per-task N  --mem M
          --max-concurrent N    at most N elements at once      --sbatch-arg ARG  any further sbatch option (repeatable)
          --no-wait             return once submitted (follow with `research watch SWEEP`)
          --point K             run only sweep point K (what each array element does)
          --store CONN          a PostgreSQL run store (Npgsql keywords or postgresql://...); default $RESEARCH_STORE, else SQLite
        """;

    static readonly HashSet<string> Flags = ["--no-wait", "--watch"];

    /// <summary><paramref name="args"/> may start with "run" (the whole command line) or not.</summary>
    public static int Execute(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var i = args.Length > 0 && args[0] == "run" ? 1 : 0;
        var options = new Dictionary<string, List<string>>();
        while (i < args.Length)
        {
            var a = args[i];
            if (a is "--help" or "-h")
            {
                Console.Out.WriteLine(Usage);
                return 0;
            }
            if (a == "--") { i++; break; }
            if (!a.StartsWith('-') || a.Length == 1) break;
            var name = a == "-w" ? "--workspace" : a;
            string value;
            var eq = name.IndexOf('=');
            if (eq > 0) { value = name[(eq + 1)..]; name = name[..eq]; i++; }
            else if (Flags.Contains(name)) { value = ""; i++; }
            else
            {
                if (i + 1 >= args.Length) return Fail($"{a} needs a value");
                value = args[i + 1];
                i += 2;
            }
            if (!Known.Contains(name)) return Fail($"unknown option {name}");
            if (Flags.Contains(name))
            {
                // --no-wait, --no-wait=true or --no-wait=false, as every command's flags
                if (value is not ("" or "true" or "false")) return Fail($"{name} takes no value (or =true / =false), got '{value}'");
                if (value == "false") { options.Remove(name); continue; }
            }
            (options.TryGetValue(name, out var list) ? list : options[name] = []).Add(value);
        }
        if (i >= args.Length) return Fail("missing script path");

        var script = args[i];
        var scriptArgs = args[(i + 1)..];
        string? One(string name) => options.TryGetValue(name, out var v) ? v[^1] : null;
        int? Int(string name) => One(name) is { } v ? int.TryParse(v, out var n) ? n : throw new CliException($"{name} expects an integer, got '{v}'") : null;

        if (One("--workspace") is { } workspace)
        {
            if (workspace.Length == 0) return Fail("--workspace needs a directory");
            Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", Path.GetFullPath(workspace));
        }
        // The store goes through the environment so that every process of a sweep (sbatch exports it) opens the same one.
        if (One("--store") is { } store) Environment.SetEnvironmentVariable(Runs.RunStore.ConnectionVariable, store);

        var onSlurm = One("--on") switch
        {
            null or "local" => false,
            "slurm" => true,
            var other => throw new CliException($"--on expects local or slurm, got '{other}'"),
        };
        var defaults = new SlurmOptions();
        var slurm = new SlurmOptions
        {
            Partition = One("--partition"),
            Time = One("--time") ?? defaults.Time,
            CpusPerTask = Int("--cpus-per-task") ?? defaults.CpusPerTask,
            GpusPerTask = Int("--gpus-per-task") ?? defaults.GpusPerTask,
            Memory = One("--mem"),
            MaxConcurrent = Int("--max-concurrent") ?? 0,
            ExtraArgs = options.TryGetValue("--sbatch-arg", out var extra) ? extra.ToArray() : [],
            Wait = !options.ContainsKey("--no-wait"),
        };
        var fullScript = Path.GetFullPath(script);
        ExecutorOptions.Hosted = new ExecutorOptions
        {
            Remote = onSlurm ? new SlurmSubmitter(slurm.Validate()) : null,
            Point = Int("--point"),
            Submission = One("--submission") is { } sub ? long.TryParse(sub, out var id) ? id : throw new CliException($"--submission expects an integer, got '{sub}'") : null,
            Script = new ScriptInvocation(fullScript, scriptArgs, ResearchCommand(), Environment.CurrentDirectory),
        };
        // $RESEARCH_THREADS (a Slurm element sets it from its --cpus-per-task) caps torch's threads.
        Research.Backend.Devices.SetThreads(null);
        try
        {
            return options.ContainsKey("--watch") ? Watch(fullScript, scriptArgs) : ScriptHost.Run(script, scriptArgs, Console.Out, Console.Error);
        }
        finally
        {
            ExecutorOptions.Hosted = null;
        }
    }

    static readonly HashSet<string> Known = ["--workspace", "--store", "--on", "--point", "--submission", "--partition", "--time", "--cpus-per-task",
        "--gpus-per-task", "--mem", "--max-concurrent", "--sbatch-arg", "--no-wait", "--watch"];

    /// <summary>
    /// Runs the script, then again after every save, in one compiler session: a re-run compiles only the script,
    /// and the executor reuses every stage whose key did not change. Ends with the process (Ctrl+C).
    /// </summary>
    static int Watch(string script, string[] scriptArgs)
    {
        using var session = new ScriptHost.Session();
        while (true)
        {
            var stamp = Stamp(script);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var code = session.Run(script, scriptArgs, Console.Out, Console.Error);
            Console.Error.WriteLine(FormattableString.Invariant(
                $"research run --watch: exit {code} in {clock.Elapsed.TotalSeconds:F2} s; watching {script} for changes (Ctrl+C stops)"));
            while (Stamp(script) == stamp) Thread.Sleep(200);
        }
    }

    static (DateTime, long) Stamp(string path)
    {
        var f = new FileInfo(path);
        return f.Exists ? (f.LastWriteTimeUtc, f.Length) : (DateTime.MinValue, -1);
    }

    /// <summary>How to start this same `research` again: its executable, or dotnet and its dll.</summary>
    public static IReadOnlyList<string> ResearchCommand()
    {
        var process = Environment.ProcessPath ?? "dotnet";
        var dll = typeof(RunCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(process) == "dotnet" ? [process, dll] : [process];
    }

    static int Fail(string message)
    {
        Console.Error.WriteLine($"research run: {message}");
        Console.Error.WriteLine(Usage);
        return 2;
    }
}
