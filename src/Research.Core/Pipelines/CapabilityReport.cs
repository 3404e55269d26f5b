using System.Globalization;
using System.Text;

namespace Research.Pipelines;

/// <summary>One capability (a suite's headline metric) across stages; null where the stage was not evaluated by that suite.</summary>
public sealed record CapabilityRow(string Suite, string Metric, IReadOnlyList<double?> Values)
{
    /// <summary>Lower is better for perplexity and bits per byte; higher for every accuracy.</summary>
    public bool LowerIsBetter => Metric is "perplexity" or "bits_per_byte";
}

/// <summary>
/// Capabilities × stages from one run of an experiment: for each suite, its headline metrics (acc, exact_match,
/// reward_acc, perplexity, in that order, those present), one column per evaluated stage in pipeline order.
/// </summary>
public sealed record CapabilityReport(IReadOnlyList<string> Stages, IReadOnlyList<CapabilityRow> Rows)
{
    public static readonly string[] Headline = ["acc", "exact_match", "reward_acc", "perplexity"];

    public static CapabilityReport From(ExperimentResult result, int run = 0) => From(result.Runs[run]);

    public static CapabilityReport From(RunResult run)
    {
        var nodes = run.Nodes.Where(n => n.Evaluations.Count > 0).ToArray();
        var suites = nodes.SelectMany(n => n.Evaluations.Keys).Distinct().ToArray();
        var rows = new List<CapabilityRow>();
        foreach (var s in suites)
        {
            var metrics = nodes.SelectMany(n => n.Evaluations.TryGetValue(s, out var m) ? m.Keys : []).Distinct().ToHashSet();
            foreach (var h in Headline.Where(metrics.Contains))
                rows.Add(new CapabilityRow(s, h, nodes.Select(n => n.Evaluations.TryGetValue(s, out var m) && m.TryGetValue(h, out var v) ? v : (double?)null).ToArray()));
        }
        return new CapabilityReport(nodes.Select(n => n.Name).ToArray(), rows);
    }

    /// <summary>The value of a capability after a stage (NaN when absent).</summary>
    public double Value(string suite, string metric, string stage)
    {
        var col = Stages.ToList().IndexOf(stage);
        var row = Rows.FirstOrDefault(r => r.Suite == suite && r.Metric == metric);
        return col >= 0 && row?.Values[col] is { } v ? v : double.NaN;
    }

    /// <summary>The report for the first <paramref name="stages"/> columns only (what was known after that stage).</summary>
    public CapabilityReport Take(int stages) =>
        new(Stages.Take(stages).ToArray(), Rows.Select(r => r with { Values = r.Values.Take(stages).ToArray() }).ToArray());

    /// <summary>A terminal table: one row per capability, one column per stage.</summary>
    public string Table()
    {
        var first = Math.Max(10, Rows.Select(r => r.Suite.Length + r.Metric.Length + 1).DefaultIfEmpty(0).Max());
        var widths = Stages.Select(s => Math.Max(8, s.Length)).ToArray();
        var sb = new StringBuilder();
        sb.Append("capability".PadRight(first));
        for (var i = 0; i < Stages.Count; i++) sb.Append("  ").Append(Stages[i].PadLeft(widths[i]));
        sb.AppendLine();
        foreach (var r in Rows)
        {
            sb.Append($"{r.Suite} {r.Metric}".PadRight(first));
            for (var i = 0; i < Stages.Count; i++)
                sb.Append("  ").Append((r.Values[i] is { } v ? v.ToString("F3", CultureInfo.InvariantCulture) : "-").PadLeft(widths[i]));
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
