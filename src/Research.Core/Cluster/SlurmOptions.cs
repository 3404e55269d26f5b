namespace Research.Cluster;

/// <summary>
/// How a sweep is submitted to Slurm: one job array, one element per sweep point. Null fields are left to the
/// cluster's defaults (its default partition, memory per CPU...).
/// </summary>
public sealed record SlurmOptions
{
    public string? Partition { get; init; }
    /// <summary>Wall-clock limit per element, in Slurm's format (minutes, "HH:MM:SS", "D-HH:MM:SS").</summary>
    public string Time { get; init; } = "04:00:00";
    public int CpusPerTask { get; init; } = 2;
    public int GpusPerTask { get; init; }
    /// <summary>Memory per element (e.g. "8G"); null: the partition's default.</summary>
    public string? Memory { get; init; }
    /// <summary>At most this many elements run at once (sbatch --array=...%N); 0: no limit.</summary>
    public int MaxConcurrent { get; init; }
    /// <summary>Further sbatch options, passed as given (e.g. "--account=lab", "--qos=short").</summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];
    /// <summary>Wait for the array to finish and return its results (true), or return right after submitting.</summary>
    public bool Wait { get; init; } = true;
    public double PollSeconds { get; init; } = 2;

    public SlurmOptions Validate()
    {
        if (CpusPerTask < 1) throw new ArgumentException($"slurm: cpus per task must be >= 1 (got {CpusPerTask})");
        if (GpusPerTask < 0) throw new ArgumentException($"slurm: gpus per task must be >= 0 (got {GpusPerTask})");
        if (MaxConcurrent < 0) throw new ArgumentException($"slurm: max concurrent must be >= 0 (got {MaxConcurrent})");
        if (string.IsNullOrWhiteSpace(Time)) throw new ArgumentException("slurm: a time limit is required (e.g. 04:00:00)");
        if (!(PollSeconds > 0)) throw new ArgumentException($"slurm: poll interval must be positive (got {PollSeconds})");
        return this;
    }

    /// <summary>The sbatch options for an array over <paramref name="points"/>.</summary>
    public IReadOnlyList<string> SbatchArgs(string jobName, IReadOnlyList<int> points, string outputPattern)
    {
        var array = Ranges(points) + (MaxConcurrent > 0 ? $"%{MaxConcurrent}" : "");
        var args = new List<string> { "--parsable", $"--job-name={jobName}", $"--array={array}", $"--output={outputPattern}",
            $"--cpus-per-task={CpusPerTask}", $"--time={Time}" };
        if (Partition is { Length: > 0 }) args.Add($"--partition={Partition}");
        if (GpusPerTask > 0) args.Add($"--gpus-per-task={GpusPerTask}");
        if (Memory is { Length: > 0 }) args.Add($"--mem={Memory}");
        args.AddRange(ExtraArgs);
        return args;
    }

    /// <summary>0,1,2,5 → "0-2,5": Slurm's array index syntax.</summary>
    public static string Ranges(IReadOnlyList<int> points)
    {
        if (points.Count == 0) throw new ArgumentException("slurm: an array needs at least one index");
        var sorted = points.Distinct().Order().ToArray();
        var parts = new List<string>();
        for (var i = 0; i < sorted.Length;)
        {
            var j = i;
            while (j + 1 < sorted.Length && sorted[j + 1] == sorted[j] + 1) j++;
            parts.Add(i == j ? $"{sorted[i]}" : $"{sorted[i]}-{sorted[j]}");
            i = j + 1;
        }
        return string.Join(",", parts);
    }
}
