namespace Research.Runs;

/// <summary>Whole tables, for exports (research export) and frames read straight from the store.</summary>
public sealed partial class RunStore
{
    /// <summary>Every node of every run, in run order then insertion order.</summary>
    public IReadOnlyList<NodeRecord> AllNodes() => Runs().SelectMany(r => Nodes(r.Id)).ToList();

    /// <summary>Every metric row (node key, step, kind, name, value), ordered by node key, step, kind and name.</summary>
    public IReadOnlyList<MetricRecord> AllMetrics() => Query(
        "SELECT node_key, step, kind, name, value FROM metrics ORDER BY node_key, step, kind, name",
        r => new MetricRecord(r.GetString(0), r.GetInt64(1), r.GetString(2), r.GetString(3), r.GetDouble(4)));

    /// <summary>Every evaluation row, ordered by run then insertion.</summary>
    public IReadOnlyList<EvaluationRecord> AllEvaluations() => Query(
        $"SELECT run_id, node_key, suite, metric, value FROM evaluations ORDER BY run_id, {InsertionOrder}",
        r => new EvaluationRecord(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetDouble(4)));
}
