using System.Data.Common;
using System.Globalization;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Research.Runs;

/// <summary>A node as the store records it for one run.</summary>
public sealed record NodeRecord(long RunId, string Key, string Name, string Kind, string Config, string Parents, string Status,
    string? Started, string? Finished, double Seconds, string? Checkpoint);

public sealed record RunRecord(long Id, string Experiment, string Point, long Seed, string Status, string Started, string? Finished);

public sealed record MetricRecord(string NodeKey, long Step, string Kind, string Name, double Value);

public sealed record EvaluationRecord(long RunId, string NodeKey, string Suite, string Metric, double Value);

/// <summary>
/// The run store. Embedded by default: SQLite in the workspace (research.db), WAL mode, every write in a
/// transaction, a busy timeout so several processes on one machine can write at once without losing a row.
/// SQLite on a filesystem shared between machines is not safe, so a cluster points every process at one
/// PostgreSQL server instead (<see cref="ConnectionVariable"/>, or the <c>connection</c> argument): the same
/// tables, the same statements.
/// </summary>
public sealed partial class RunStore : IDisposable
{
    public const string FileName = "research.db";
    /// <summary>Environment variable naming a PostgreSQL store (Npgsql keywords or a postgresql:// URI).</summary>
    public const string ConnectionVariable = "RESEARCH_STORE";
    readonly DbConnection _db;
    readonly bool _postgres;

    /// <summary>Where the store lives: the SQLite file, or the PostgreSQL server and database (no password).</summary>
    public string Path { get; }
    public bool IsPostgres => _postgres;

    /// <param name="workspace">The workspace (the SQLite file lives in it).</param>
    /// <param name="connection">A PostgreSQL connection; null: $RESEARCH_STORE when set, else the workspace's SQLite file.</param>
    public RunStore(string workspace, string? connection = null)
    {
        connection ??= Environment.GetEnvironmentVariable(ConnectionVariable);
        if (!string.IsNullOrWhiteSpace(connection))
        {
            var builder = new NpgsqlConnectionStringBuilder(Postgres(connection)) { Pooling = false };
            Path = $"postgresql://{builder.Host}:{builder.Port}/{builder.Database}";
            _postgres = true;
            _db = new NpgsqlConnection(builder.ToString());
            try { _db.Open(); }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                throw new InvalidOperationException($"run store {Path}: cannot connect ({e.Message}); check {ConnectionVariable} or unset it to use the workspace's SQLite file", e);
            }
            // One process creates the tables; the others wait on the advisory lock and find them.
            InTransaction(() => { Exec("SELECT pg_advisory_xact_lock(72657365617263)"); Exec(StoreSchema.Postgres); Migrate(); });
        }
        else
        {
            Directory.CreateDirectory(workspace);
            Path = System.IO.Path.Combine(workspace, FileName);
            _db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path, Pooling = false, DefaultTimeout = 60 }.ToString());
            try
            {
                _db.Open();
                Exec("PRAGMA busy_timeout = 60000;");
                Exec("PRAGMA journal_mode = WAL;");
                Exec("PRAGMA synchronous = NORMAL;");
                InTransaction(() => { Exec(StoreSchema.Sqlite); Migrate(); });
            }
            catch (SqliteException e)
            {
                _db.Dispose();
                throw new InvalidDataException($"{Path}: not a readable run store ({e.Message}); move it aside to start a new one", e);
            }
        }
    }

    /// <summary>An older store is brought up to this build's schema in the transaction that opened it; a newer one is an error.</summary>
    void Migrate()
    {
        var current = StoreSchema.Version.ToString(CultureInfo.InvariantCulture);
        var version = Scalar("SELECT value FROM meta WHERE key = 'schema_version'") as string;
        if (version == current) return;
        if (StoreSchema.Migration(version) is not { } migration)
            throw new InvalidDataException($"{Path}: run store schema version {version}, this build reads {StoreSchema.Version}; use the build that wrote it, or move the store aside");
        Exec(migration);
    }

    /// <summary>Npgsql keywords as given; a postgresql://user:password@host:port/database URI translated to them.</summary>
    static string Postgres(string connection)
    {
        if (!connection.StartsWith("postgres://", StringComparison.Ordinal) && !connection.StartsWith("postgresql://", StringComparison.Ordinal))
            return connection;
        var uri = new Uri(connection);
        var b = new NpgsqlConnectionStringBuilder { Host = uri.Host, Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port, Database = uri.AbsolutePath.Trim('/') };
        if (uri.UserInfo.Length > 0)
        {
            var parts = uri.UserInfo.Split(':', 2);
            b.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length > 1) b.Password = Uri.UnescapeDataString(parts[1]);
        }
        return b.ToString();
    }

    /// <summary>The column that orders rows as they were first inserted.</summary>
    string InsertionOrder => _postgres ? "seq" : "rowid";

    static string Now() => DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);

    public long StartRun(string experiment, string point, long seed) => InTransaction(() =>
    {
        Exec("INSERT INTO experiments(name, created) VALUES(@n, @t) ON CONFLICT(name) DO NOTHING", ("@n", experiment), ("@t", Now()));
        var expId = Convert.ToInt64(Scalar("SELECT id FROM experiments WHERE name = @n", ("@n", experiment)), CultureInfo.InvariantCulture);
        var now = Now();
        return Convert.ToInt64(Scalar("""
            INSERT INTO runs(experiment_id, point, seed, status, started, pid, process, host, heartbeat)
            VALUES(@e, @p, @s, 'running', @t, @pid, @proc, @host, @t) RETURNING id
            """, ("@e", expId), ("@p", point), ("@s", seed), ("@t", now), ("@pid", (long)Environment.ProcessId),
            ("@proc", ProcessIdentity.Current.ToString()), ("@host", Environment.MachineName)), CultureInfo.InvariantCulture);
    });

    /// <summary>Says the run's process is alive (<see cref="RunLiveness"/>); what <see cref="RunHeartbeat"/> calls.</summary>
    public void Beat(long runId) =>
        InTransaction(() => Exec("UPDATE runs SET heartbeat = @t WHERE id = @id AND status = 'running'", ("@t", Now()), ("@id", runId)));

    public void FinishRun(long runId, string status) =>
        InTransaction(() => Exec("UPDATE runs SET status = @s, finished = @t WHERE id = @id", ("@s", status), ("@t", Now()), ("@id", runId)));

    public void UpsertNode(NodeRecord n) => InTransaction(() => Exec("""
        INSERT INTO nodes(run_id, key, name, kind, config, parents, status, started, finished, seconds, checkpoint)
        VALUES(@r, @k, @n, @kind, @c, @p, @s, @st, @f, @sec, @ck)
        ON CONFLICT(run_id, key) DO UPDATE SET status = excluded.status, started = excluded.started, finished = excluded.finished,
            seconds = excluded.seconds, checkpoint = excluded.checkpoint
        """, ("@r", n.RunId), ("@k", n.Key), ("@n", n.Name), ("@kind", n.Kind), ("@c", n.Config), ("@p", n.Parents), ("@s", n.Status),
        ("@st", n.Started), ("@f", n.Finished), ("@sec", n.Seconds), ("@ck", n.Checkpoint)));

    /// <summary>Records a node's metrics (idempotent: a re-import of the same file changes nothing).</summary>
    public void PutMetrics(string nodeKey, IEnumerable<MetricRecord> rows)
    {
        var list = rows.ToList();
        InTransaction(() =>
        {
            foreach (var m in list)
                Exec("INSERT INTO metrics(node_key, step, kind, name, value) VALUES(@k, @s, @kind, @n, @v) ON CONFLICT(node_key, step, kind, name) DO UPDATE SET value = excluded.value",
                    ("@k", nodeKey), ("@s", m.Step), ("@kind", m.Kind), ("@n", m.Name), ("@v", m.Value));
        });
    }

    public void PutEvaluations(IEnumerable<EvaluationRecord> rows)
    {
        var list = rows.ToList();
        InTransaction(() =>
        {
            foreach (var e in list)
                Exec("INSERT INTO evaluations(run_id, node_key, suite, metric, value) VALUES(@r, @k, @s, @m, @v) ON CONFLICT(run_id, node_key, suite, metric) DO UPDATE SET value = excluded.value",
                    ("@r", e.RunId), ("@k", e.NodeKey), ("@s", e.Suite), ("@m", e.Metric), ("@v", e.Value));
        });
    }

    /// <summary>Every run; one recorded as running whose process is gone (killed, lost) shows as <see cref="RunLiveness.Interrupted"/>.</summary>
    public IReadOnlyList<RunRecord> Runs()
    {
        var now = DateTimeOffset.UtcNow;
        return Query("""
            SELECT r.id, e.name, r.point, r.seed, r.status, r.started, r.finished, r.process, r.host, r.heartbeat
            FROM runs r JOIN experiments e ON e.id = r.experiment_id ORDER BY r.id
            """, r => new RunRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3),
                RunLiveness.Status(r.GetString(4), Text(r, 7), Text(r, 8), Text(r, 9), r.GetString(5), now), r.GetString(5), Text(r, 6)));
    }

    static string? Text(DbDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    public RunRecord? Run(long id) => Runs().FirstOrDefault(r => r.Id == id);

    /// <summary>A run's nodes; a node left running by an interrupted run shows as interrupted too.</summary>
    public IReadOnlyList<NodeRecord> Nodes(long runId)
    {
        var nodes = RecordedNodes(runId);
        if (nodes.All(n => n.Status != RunLiveness.Running) || Run(runId)?.Status != RunLiveness.Interrupted) return nodes;
        return nodes.Select(n => n.Status == RunLiveness.Running ? n with { Status = RunLiveness.Interrupted } : n).ToList();
    }

    IReadOnlyList<NodeRecord> RecordedNodes(long runId) => Query($"""
        SELECT run_id, key, name, kind, config, parents, status, started, finished, seconds, checkpoint FROM nodes WHERE run_id = @r ORDER BY {InsertionOrder}
        """, r => new NodeRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5), r.GetString(6),
            r.IsDBNull(7) ? null : r.GetString(7), r.IsDBNull(8) ? null : r.GetString(8), r.GetDouble(9), r.IsDBNull(10) ? null : r.GetString(10)), ("@r", runId));

    public IReadOnlyList<MetricRecord> Metrics(string nodeKey) => Query(
        "SELECT node_key, step, kind, name, value FROM metrics WHERE node_key = @k ORDER BY step, kind, name",
        r => new MetricRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetDouble(4)), ("@k", nodeKey));

    /// <summary>The last value of every metric of a node (train and val), by name.</summary>
    public IReadOnlyDictionary<string, double> FinalMetrics(string nodeKey) =>
        Metrics(nodeKey).GroupBy(m => m.Name).ToDictionary(g => g.Key, g => g.OrderBy(m => m.Step).Last().Value);

    public IReadOnlyList<EvaluationRecord> Evaluations(long runId) => Query(
        $"SELECT run_id, node_key, suite, metric, value FROM evaluations WHERE run_id = @r ORDER BY {InsertionOrder}",
        r => new EvaluationRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetDouble(4)), ("@r", runId));

    /// <summary>Every checkpoint path any run references.</summary>
    public IReadOnlySet<string> ReferencedCheckpoints() =>
        Query("SELECT DISTINCT checkpoint FROM nodes WHERE checkpoint IS NOT NULL", r => r.GetString(0)).ToHashSet();

    public int Count(string table) => Convert.ToInt32(Scalar($"SELECT COUNT(*) FROM {table}"), CultureInfo.InvariantCulture);

    T InTransaction<T>(Func<T> work)
    {
        for (var attempt = 0; ; attempt++)
        {
            // SQLite: BEGIN IMMEDIATE takes the write lock up front, so two writers queue instead of failing mid-transaction.
            try
            {
                Exec(_postgres ? "BEGIN" : "BEGIN IMMEDIATE");
            }
            catch (SqliteException e) when (e.SqliteErrorCode is 5 or 6 && attempt < 600) { Thread.Sleep(100); continue; }
            try
            {
                var result = work();
                Exec("COMMIT");
                return result;
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure && attempt < 50)
            {
                // PostgreSQL chose this transaction as a deadlock victim: nothing of it was written; do it again.
                Exec("ROLLBACK");
                Thread.Sleep(20 + Random.Shared.Next(80));
            }
            catch
            {
                Exec("ROLLBACK");
                throw;
            }
        }
    }

    void InTransaction(Action work) => InTransaction(() => { work(); return 0; });

    void Exec(string sql, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(sql, args);
        cmd.ExecuteNonQuery();
    }

    object? Scalar(string sql, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(sql, args);
        return cmd.ExecuteScalar();
    }

    List<T> Query<T>(string sql, Func<DbDataReader, T> row, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(sql, args);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(row(r));
        return list;
    }

    DbCommand Command(string sql, (string Name, object? Value)[] args)
    {
        var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in args)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value ?? DBNull.Value;
            // An untyped NULL gives PostgreSQL nothing to infer a type from; every nullable column here is text or bigint.
            if (value is null) p.DbType = name is "@run" ? System.Data.DbType.Int64 : System.Data.DbType.String;
            cmd.Parameters.Add(p);
        }
        return cmd;
    }

    public void Dispose() => _db.Dispose();
}
