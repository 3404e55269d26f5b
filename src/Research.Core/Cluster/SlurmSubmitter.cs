using System.Globalization;
using System.Text;
using System.Text.Json;
using Research.Pipelines;
using Research.Runs;
using Research.Training;

namespace Research.Cluster;

/// <summary>What a submission needs to be submitted again: the Slurm options and how to start `research`.</summary>
public sealed record SubmissionSpec(SlurmOptions Slurm, IReadOnlyList<string> Research, string WorkingDirectory);

/// <summary>The sweep was submitted and the caller asked not to wait (--no-wait).</summary>
public sealed class SweepSubmittedException(long submission, string jobId, int points)
    : Exception($"submitted sweep {submission} as Slurm array job {jobId} ({points} element(s)); follow it with `research watch {submission}`")
{
    public long Submission { get; } = submission;
    public string JobId { get; } = jobId;
}

/// <summary>Some elements of a submitted sweep failed; the finished ones are kept and reused.</summary>
public sealed class SweepFailedException(long submission, IReadOnlyList<ElementRecord> failed)
    : Exception($"sweep {submission}: point(s) {string.Join(", ", failed.Select(f => $"{f.Point} (job {f.JobId})"))} failed; " +
                $"their logs are in the workspace's slurm/{submission}/ folder. Fix the cause, then `research resubmit {submission}` runs only those points")
{
    public long Submission { get; } = submission;
}

/// <summary>
/// The Slurm backend: a sweep becomes one job array. Each element runs the same script with
/// `research run --point K --submission ID` against the shared workspace, so the content-addressed cache
/// makes elements idempotent: a resubmitted or duplicated element reuses whatever already finished. Slurm
/// schedules, retries and accounts; this class only submits, watches and collects.
/// </summary>
public sealed class SlurmSubmitter(SlurmOptions slurmOptions) : IRemoteBackend
{
    public const string Folder = "slurm";

    public ExperimentResult Run(Experiment experiment, ExecutorOptions options)
    {
        var script = options.Script ?? throw new InvalidOperationException(
            "the Slurm backend submits the script that builds the experiment once per sweep point: run it with `research run --on slurm SCRIPT.fsx`");
        var slurm = slurmOptions.Validate();
        var workspace = Path.GetFullPath(options.Workspace);
        using var store = new RunStore(workspace, options.Store);
        var spec = new SubmissionSpec(slurm, script.Research, script.WorkingDirectory);
        var id = store.AddSubmission(experiment.Name, script.Path, script.Args, workspace, experiment.Points.Count, JsonSerializer.Serialize(spec));
        var job = Submit(store, store.Submission(id)!, Enumerable.Range(0, experiment.Points.Count).ToArray());
        options.Log.WriteLine($"sweep {id}: {experiment.Name}, {experiment.Points.Count} point(s) submitted as Slurm array job {job}");
        if (!slurm.Wait) throw new SweepSubmittedException(id, job, experiment.Points.Count);
        var elements = Watch(store, id, options.Log, slurm.PollSeconds);
        var failed = elements.Where(e => !e.Done).ToArray();
        if (failed.Length > 0) throw new SweepFailedException(id, failed);
        return Collect(store, experiment, elements);
    }

    /// <summary>Submits the given points of a submission as one array; records each element's job id. Returns the array's id.</summary>
    public static string Submit(RunStore store, SubmissionRecord submission, IReadOnlyList<int> points)
    {
        var spec = JsonSerializer.Deserialize<SubmissionSpec>(submission.Options)
            ?? throw new InvalidDataException($"submission {submission.Id}: no options recorded");
        var dir = Path.Combine(submission.Workspace, Folder, submission.Id.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var batch = Path.Combine(dir, "element.sh");
        AtomicFile.WriteAllText(batch, BatchScript(submission, spec));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(batch, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var name = "research-" + new string(submission.Experiment.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray());
        var job = Slurm.Submit(spec.Slurm.SbatchArgs(name, points, Path.Combine(dir, "point-%a.out")), batch);
        foreach (var k in points) store.SetElement(submission.Id, k, ElementStates.Submitted, $"{job}_{k}");
        return job;
    }

    /// <summary>The element's batch script: start `research run` for point $SLURM_ARRAY_TASK_ID of the submission.</summary>
    static string BatchScript(SubmissionRecord s, SubmissionSpec spec)
    {
        var command = spec.Research.Concat(["run", "--workspace", s.Workspace, "--point", "__POINT__", "--submission", s.Id.ToString(CultureInfo.InvariantCulture), s.Script])
            .Concat(s.Args).Select(a => a == "__POINT__" ? "\"$SLURM_ARRAY_TASK_ID\"" : Quote(a));
        var sb = new StringBuilder();
        sb.Append("#!/bin/bash\n");
        sb.Append($"# research sweep {s.Id} ({s.Experiment}): one element per sweep point, all sharing the workspace {s.Workspace}\n");
        sb.Append("set -euo pipefail\n");
        sb.Append($"cd {Quote(spec.WorkingDirectory)}\n");
        sb.Append("export RESEARCH_THREADS=\"${RESEARCH_THREADS:-${SLURM_CPUS_PER_TASK:-}}\"\n");
        sb.Append("exec ").Append(string.Join(" ", command)).Append('\n');
        return sb.ToString();
    }

    static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>This process's element as Slurm names it ("12_3"), or null outside an array job.</summary>
    /// <summary>
    /// One look at a submission: Slurm's view of each element reconciled with what the elements recorded.
    /// An element Slurm reports ended (cancelled, failed, timed out...) without having recorded success is
    /// marked failed, so `research runs` and `resubmit` see it. Returns the elements with Slurm's state.
    /// </summary>
    public static IReadOnlyList<(ElementRecord Element, string? Slurm)> Refresh(RunStore store, long submission)
    {
        var live = Slurm.States();
        var result = new List<(ElementRecord, string?)>();
        foreach (var e in store.Elements(submission))
        {
            var state = e.JobId is not null && live.TryGetValue(e.JobId, out var s) ? s : null;
            var element = e;
            if (!e.Done && e.State != ElementStates.Failed)
            {
                var ended = state is not null && Slurm.Ended(state);
                var vanished = state is null && e.State is ElementStates.Submitted or ElementStates.Running
                    && DateTimeOffset.UtcNow - DateTimeOffset.Parse(e.Updated, CultureInfo.InvariantCulture) > TimeSpan.FromSeconds(30);
                if (ended || vanished)
                {
                    // The element may have recorded success a moment ago: read it again before deciding.
                    element = store.Elements(submission).First(x => x.Point == e.Point);
                    if (!element.Done)
                    {
                        store.SetElement(submission, e.Point, ElementStates.Failed);
                        element = element with { State = ElementStates.Failed };
                    }
                }
            }
            result.Add((element, state));
        }
        return result;
    }

    /// <summary>Follows a submission until every element is done or failed, printing each change of state.</summary>
    public static IReadOnlyList<ElementRecord> Watch(RunStore store, long submission, TextWriter log, double pollSeconds = 2)
    {
        var last = new Dictionary<int, string>();
        while (true)
        {
            var now = Refresh(store, submission);
            foreach (var (e, s) in now)
            {
                var shown = Describe(e, s);
                if (!last.TryGetValue(e.Point, out var before) || before != shown)
                {
                    log.WriteLine($"  point {e.Point} (job {e.JobId ?? "-"}): {shown}");
                    last[e.Point] = shown;
                }
            }
            if (now.All(x => x.Element.Done || x.Element.State == ElementStates.Failed))
            {
                log.WriteLine($"sweep {submission}: {now.Count(x => x.Element.Done)} done, {now.Count(x => !x.Element.Done)} failed");
                return now.Select(x => x.Element).ToArray();
            }
            Thread.Sleep(TimeSpan.FromSeconds(pollSeconds));
        }
    }

    public static string Describe(ElementRecord e, string? slurm) =>
        slurm is null || e.Done ? e.State : $"{e.State} (slurm: {slurm.ToLowerInvariant()})";

    /// <summary>
    /// Submits again the points of a submission that are not done and not queued or running; returns the
    /// new array's id, or null when there was nothing to submit.
    /// </summary>
    public static string? Resubmit(RunStore store, long submission, TextWriter log)
    {
        var record = store.Submission(submission) ?? throw new ArgumentException($"no submission {submission} in {store.Path} (see `research runs`)");
        var now = Refresh(store, submission);
        var busy = now.Where(x => !x.Element.Done && x.Element.State != ElementStates.Failed).Select(x => x.Element.Point).ToArray();
        var todo = now.Where(x => x.Element.State == ElementStates.Failed).Select(x => x.Element.Point).ToArray();
        if (busy.Length > 0) log.WriteLine($"sweep {submission}: point(s) {string.Join(", ", busy)} still queued or running; left as they are");
        if (todo.Length == 0)
        {
            log.WriteLine($"sweep {submission}: no failed point to resubmit");
            return null;
        }
        var job = Submit(store, record, todo);
        log.WriteLine($"sweep {submission}: point(s) {string.Join(", ", todo)} resubmitted as Slurm array job {job}");
        return job;
    }

    /// <summary>The results of a finished submission, read back from the store and the shared node directories.</summary>
    public static ExperimentResult Collect(RunStore store, Experiment experiment, IReadOnlyList<ElementRecord> elements)
    {
        var runs = elements.OrderBy(e => e.Point).Select(e =>
        {
            var runId = e.RunId ?? throw new InvalidDataException($"sweep point {e.Point} finished without recording its run");
            var evaluations = store.Evaluations(runId).GroupBy(v => v.NodeKey)
                .ToDictionary(g => g.Key, g => (IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>>)g.GroupBy(v => v.Suite)
                    .ToDictionary(s => s.Key, s => (IReadOnlyDictionary<string, double>)s.ToDictionary(v => v.Metric, v => v.Value)));
            var nodes = store.Nodes(runId).Select(n =>
            {
                var dir = Path.GetDirectoryName(n.Checkpoint ?? throw new InvalidDataException($"run {runId}: node {n.Name} has no checkpoint"))!;
                var done = Path.Combine(dir, Executor.DoneFile);
                return new NodeResult(n.Name, n.Kind, n.Key, n.Status, dir, File.Exists(done) ? Executor.ReadDone(done) : new Dictionary<string, double>(),
                    evaluations.TryGetValue(n.Key, out var ev) ? ev : new Dictionary<string, IReadOnlyDictionary<string, double>>());
            }).ToArray();
            return new RunResult(runId, experiment.Points[e.Point], experiment.SeedOf(experiment.Points[e.Point]), nodes);
        }).ToArray();
        return new ExperimentResult(experiment.Name, runs);
    }
}
