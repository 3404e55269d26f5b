using System.Globalization;
using System.Text.Json;

namespace Research.Runs;

/// <summary>A sweep submitted to a cluster: the script that builds it and the workspace its elements share.</summary>
public sealed record SubmissionRecord(long Id, string Experiment, string Script, IReadOnlyList<string> Args, string Workspace, int Points, string Options, string Created);

/// <summary>One sweep point of a submission: its scheduler job id (e.g. "12_3"), last known state and the run it recorded.</summary>
public sealed record ElementRecord(long Submission, int Point, string? JobId, string State, long? RunId, string Updated)
{
    public bool Done => State == ElementStates.Done;
}

public static class ElementStates
{
    public const string Pending = "pending";
    public const string Submitted = "submitted";
    public const string Running = "running";
    public const string Done = "done";
    public const string Failed = "failed";

    /// <summary>The cluster job this process runs as (Slurm's array job and task, "123_4"), or null outside a job array.</summary>
    public static string? JobIdFromEnvironment()
    {
        var array = Environment.GetEnvironmentVariable("SLURM_ARRAY_JOB_ID");
        var task = Environment.GetEnvironmentVariable("SLURM_ARRAY_TASK_ID");
        return string.IsNullOrEmpty(array) || string.IsNullOrEmpty(task) ? null : $"{array}_{task}";
    }
}

public sealed partial class RunStore
{
    /// <summary>Records a submission and one pending element per sweep point; returns its id.</summary>
    public long AddSubmission(string experiment, string script, IReadOnlyList<string> args, string workspace, int points, string options) => InTransaction(() =>
    {
        var id = Convert.ToInt64(Scalar("""
            INSERT INTO submissions(experiment, script, args, workspace, points, options, created) VALUES(@e, @s, @a, @w, @n, @o, @t) RETURNING id
            """, ("@e", experiment), ("@s", script), ("@a", JsonSerializer.Serialize(args)), ("@w", workspace), ("@n", (long)points), ("@o", options), ("@t", Now())),
            CultureInfo.InvariantCulture);
        for (var k = 0; k < points; k++)
            Exec("INSERT INTO elements(submission_id, point, state, updated) VALUES(@id, @k, @s, @t)", ("@id", id), ("@k", (long)k), ("@s", ElementStates.Pending), ("@t", Now()));
        return id;
    });

    /// <summary>Sets an element's state; a job id or run id given replaces the recorded one.</summary>
    public void SetElement(long submission, int point, string state, string? jobId = null, long? runId = null) => InTransaction(() =>
    {
        var n = Count("""
            UPDATE elements SET state = @s, updated = @t, job_id = COALESCE(@j, job_id), run_id = COALESCE(@run, run_id)
            WHERE submission_id = @id AND point = @k
            """, ("@s", state), ("@t", Now()), ("@j", jobId), ("@run", runId), ("@id", submission), ("@k", (long)point));
        if (n != 1) throw new InvalidOperationException($"submission {submission} has no sweep point {point}");
    });

    public SubmissionRecord? Submission(long id) => Submissions().FirstOrDefault(s => s.Id == id);

    public IReadOnlyList<SubmissionRecord> Submissions() => Query(
        "SELECT id, experiment, script, args, workspace, points, options, created FROM submissions ORDER BY id",
        r => new SubmissionRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), JsonSerializer.Deserialize<string[]>(r.GetString(3)) ?? [],
            r.GetString(4), checked((int)r.GetInt64(5)), r.GetString(6), r.GetString(7)));

    public IReadOnlyList<ElementRecord> Elements(long submission) => Query(
        "SELECT submission_id, point, job_id, state, run_id, updated FROM elements WHERE submission_id = @id ORDER BY point",
        r => new ElementRecord(r.GetInt64(0), checked((int)r.GetInt64(1)), r.IsDBNull(2) ? null : r.GetString(2), r.GetString(3),
            r.IsDBNull(4) ? null : r.GetInt64(4), r.GetString(5)), ("@id", submission));

    /// <summary>For every run recorded by a cluster element: that element.</summary>
    public IReadOnlyDictionary<long, ElementRecord> ElementsByRun() => Query(
        "SELECT submission_id, point, job_id, state, run_id, updated FROM elements WHERE run_id IS NOT NULL",
        r => new ElementRecord(r.GetInt64(0), checked((int)r.GetInt64(1)), r.IsDBNull(2) ? null : r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5)))
        .GroupBy(e => e.RunId!.Value).ToDictionary(g => g.Key, g => g.Last());

    int Count(string sql, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(sql, args);
        return cmd.ExecuteNonQuery();
    }
}
