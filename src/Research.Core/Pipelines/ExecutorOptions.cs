namespace Research.Pipelines;

/// <summary>
/// Runs an experiment's points somewhere other than this process (a cluster). The layer that knows how implements
/// it (Research.Cluster's SlurmSubmitter), so the executor needs no knowledge of any scheduler.
/// </summary>
public interface IRemoteBackend
{
    ExperimentResult Run(Experiment experiment, ExecutorOptions options);
}

/// <summary>The script an experiment was built by, and how to start `research` again to run one of its points.</summary>
/// <param name="Path">The script's full path.</param>
/// <param name="Args">The script's own arguments.</param>
/// <param name="Research">The command that starts this `research` (the executable, or dotnet and the dll).</param>
/// <param name="WorkingDirectory">Where the script was started (elements start there too).</param>
public sealed record ScriptInvocation(string Path, IReadOnlyList<string> Args, IReadOnlyList<string> Research, string WorkingDirectory);

/// <summary>Where and how an experiment runs.</summary>
public sealed record ExecutorOptions
{
    public string Workspace { get; init; } = "runs";
    public string? Device { get; init; }
    public TextWriter Log { get; init; } = Console.Out;
    /// <summary>Null (default): every point in this process. A remote backend (Slurm: one job array, an element per point) otherwise.</summary>
    public IRemoteBackend? Remote { get; init; }
    /// <summary>Run only this sweep point (what a cluster element does).</summary>
    public int? Point { get; init; }
    /// <summary>The cluster submission this process is an element of: its state is recorded there.</summary>
    public long? Submission { get; init; }
    /// <summary>A PostgreSQL run store; null: $RESEARCH_STORE when set, else the workspace's SQLite file.</summary>
    public string? Store { get; init; }
    /// <summary>Set by `research run`: the script a remote backend submits again for each point.</summary>
    public ScriptInvocation? Script { get; init; }

    /// <summary>
    /// What `research run` was told (--on slurm, --point, --submission, Slurm options), for the scripts it hosts:
    /// <c>Experiment.run</c> in a script starts from these. Null outside `research run`.
    /// </summary>
    public static ExecutorOptions? Hosted { get; set; }

    /// <summary>The hosted options (or the defaults) with this workspace.</summary>
    public static ExecutorOptions ForWorkspace(string workspace) => (Hosted ?? new ExecutorOptions()) with { Workspace = workspace };
}
