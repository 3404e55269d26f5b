using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Research.Runs;

/// <summary>A node as the store records it for one run.</summary>
public sealed record NodeRecord(long RunId, string Key, string Name, string Kind, string Config, string Parents, string Status,
    string? Started, string? Finished, double Seconds, string? Checkpoint);

public sealed record RunRecord(long Id, string Experiment, string Point, long Seed, string Status, string Started, string? Finished);

public sealed record MetricRecord(string NodeKey, long Step, string Kind, string Name, double Value);

public sealed record EvaluationRecord(long RunId, string NodeKey, string Suite, string Metric, double Value);

/// <summary>
/// The embedded run store: SQLite in the workspace (research.db), WAL mode, every write in a
/// transaction, a busy timeout so several processes can write at once without losing a row.
/// </summary>
public sealed class RunStore : IDisposable
{
    public const string FileName = "research.db";
    const int SchemaVersion = 1;
    readonly SqliteConnection _db;

    public string Path { get; }

    public RunStore(string workspace)
    {
        Directory.CreateDirectory(workspace);
        Path = System.IO.Path.Combine(workspace, FileName);
        _db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path, Pooling = false, DefaultTimeout = 60 }.ToString());
        _db.Open();
        Exec("PRAGMA busy_timeout = 60000;");
        Exec("PRAGMA journal_mode = WAL;");
        Exec("PRAGMA synchronous = NORMAL;");
        InTransaction(() => Exec("""
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS experiments(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id INTEGER NOT NULL REFERENCES experiments(id),
                point TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, pid INTEGER);
            CREATE TABLE IF NOT EXISTS nodes(run_id INTEGER NOT NULL REFERENCES runs(id), key TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
                config TEXT NOT NULL, parents TEXT NOT NULL, status TEXT NOT NULL, started TEXT, finished TEXT, seconds REAL NOT NULL DEFAULT 0,
                checkpoint TEXT, PRIMARY KEY(run_id, key));
            CREATE TABLE IF NOT EXISTS metrics(node_key TEXT NOT NULL, step INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
                PRIMARY KEY(node_key, step, kind, name));
            CREATE TABLE IF NOT EXISTS evaluations(run_id INTEGER NOT NULL, node_key TEXT NOT NULL, suite TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
                PRIMARY KEY(run_id, node_key, suite, metric));
            INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1');
            """));
        var version = Scalar("SELECT value FROM meta WHERE key = 'schema_version'") as string;
        if (version != SchemaVersion.ToString(CultureInfo.InvariantCulture))
            throw new InvalidDataException($"{Path}: run store schema version {version}, this build reads {SchemaVersion}");
    }

    static string Now() => DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);

    public long StartRun(string experiment, string point, long seed) => InTransaction(() =>
    {
        Exec("INSERT OR IGNORE INTO experiments(name, created) VALUES($n, $t)", ("$n", experiment), ("$t", Now()));
        var expId = Convert.ToInt64(Scalar("SELECT id FROM experiments WHERE name = $n", ("$n", experiment)), CultureInfo.InvariantCulture);
        Exec("INSERT INTO runs(experiment_id, point, seed, status, started, pid) VALUES($e, $p, $s, 'running', $t, $pid)",
            ("$e", expId), ("$p", point), ("$s", seed), ("$t", Now()), ("$pid", Environment.ProcessId));
        return Convert.ToInt64(Scalar("SELECT last_insert_rowid()"), CultureInfo.InvariantCulture);
    });

    public void FinishRun(long runId, string status) =>
        InTransaction(() => Exec("UPDATE runs SET status = $s, finished = $t WHERE id = $id", ("$s", status), ("$t", Now()), ("$id", runId)));

    public void UpsertNode(NodeRecord n) => InTransaction(() => Exec("""
        INSERT INTO nodes(run_id, key, name, kind, config, parents, status, started, finished, seconds, checkpoint)
        VALUES($r, $k, $n, $kind, $c, $p, $s, $st, $f, $sec, $ck)
        ON CONFLICT(run_id, key) DO UPDATE SET status = excluded.status, started = excluded.started, finished = excluded.finished,
            seconds = excluded.seconds, checkpoint = excluded.checkpoint
        """, ("$r", n.RunId), ("$k", n.Key), ("$n", n.Name), ("$kind", n.Kind), ("$c", n.Config), ("$p", n.Parents), ("$s", n.Status),
        ("$st", n.Started), ("$f", n.Finished), ("$sec", n.Seconds), ("$ck", n.Checkpoint)));

    /// <summary>Records a node's metrics (idempotent: a re-import of the same file changes nothing).</summary>
    public void PutMetrics(string nodeKey, IEnumerable<MetricRecord> rows) => InTransaction(() =>
    {
        foreach (var m in rows)
            Exec("INSERT OR REPLACE INTO metrics(node_key, step, kind, name, value) VALUES($k, $s, $kind, $n, $v)",
                ("$k", nodeKey), ("$s", m.Step), ("$kind", m.Kind), ("$n", m.Name), ("$v", m.Value));
    });

    public void PutEvaluations(IEnumerable<EvaluationRecord> rows) => InTransaction(() =>
    {
        foreach (var e in rows)
            Exec("INSERT OR REPLACE INTO evaluations(run_id, node_key, suite, metric, value) VALUES($r, $k, $s, $m, $v)",
                ("$r", e.RunId), ("$k", e.NodeKey), ("$s", e.Suite), ("$m", e.Metric), ("$v", e.Value));
    });

    public IReadOnlyList<RunRecord> Runs() => Query("""
        SELECT r.id, e.name, r.point, r.seed, r.status, r.started, r.finished FROM runs r JOIN experiments e ON e.id = r.experiment_id ORDER BY r.id
        """, r => new RunRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetString(4), r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6)));

    public RunRecord? Run(long id) => Runs().FirstOrDefault(r => r.Id == id);

    public IReadOnlyList<NodeRecord> Nodes(long runId) => Query("""
        SELECT run_id, key, name, kind, config, parents, status, started, finished, seconds, checkpoint FROM nodes WHERE run_id = $r ORDER BY rowid
        """, r => new NodeRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5), r.GetString(6),
            r.IsDBNull(7) ? null : r.GetString(7), r.IsDBNull(8) ? null : r.GetString(8), r.GetDouble(9), r.IsDBNull(10) ? null : r.GetString(10)), ("$r", runId));

    public IReadOnlyList<MetricRecord> Metrics(string nodeKey) => Query(
        "SELECT node_key, step, kind, name, value FROM metrics WHERE node_key = $k ORDER BY step, kind, name",
        r => new MetricRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetDouble(4)), ("$k", nodeKey));

    /// <summary>The last value of every metric of a node (train and val), by name.</summary>
    public IReadOnlyDictionary<string, double> FinalMetrics(string nodeKey) =>
        Metrics(nodeKey).GroupBy(m => m.Name).ToDictionary(g => g.Key, g => g.OrderBy(m => m.Step).Last().Value);

    public IReadOnlyList<EvaluationRecord> Evaluations(long runId) => Query(
        "SELECT run_id, node_key, suite, metric, value FROM evaluations WHERE run_id = $r ORDER BY rowid",
        r => new EvaluationRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetDouble(4)), ("$r", runId));

    /// <summary>Every checkpoint path any run references.</summary>
    public IReadOnlySet<string> ReferencedCheckpoints() =>
        Query("SELECT DISTINCT checkpoint FROM nodes WHERE checkpoint IS NOT NULL", r => r.GetString(0)).ToHashSet();

    public int Count(string table) => Convert.ToInt32(Scalar($"SELECT COUNT(*) FROM {table}"), CultureInfo.InvariantCulture);

    T InTransaction<T>(Func<T> work)
    {
        // BEGIN IMMEDIATE takes the write lock up front, so two writers queue instead of failing mid-transaction.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                Exec("BEGIN IMMEDIATE");
                break;
            }
            catch (SqliteException e) when (e.SqliteErrorCode is 5 or 6 && attempt < 600) { Thread.Sleep(100); }
        }
        try
        {
            var result = work();
            Exec("COMMIT");
            return result;
        }
        catch
        {
            Exec("ROLLBACK");
            throw;
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

    List<T> Query<T>(string sql, Func<SqliteDataReader, T> row, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(sql, args);
        using var r = cmd.ExecuteReader();
        var list = new List<T>();
        while (r.Read()) list.Add(row(r));
        return list;
    }

    SqliteCommand Command(string sql, (string Name, object? Value)[] args)
    {
        var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    public void Dispose() => _db.Dispose();
}
