using System.Globalization;
using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace Research.Runs;

public enum ExportColumnType { Int64, Double, String }

public sealed record ExportColumn(string Name, ExportColumnType Type);

/// <summary>One table of the run store as rows of cells (long, double, string or null), ready to write.</summary>
public sealed record ExportTable(string Name, IReadOnlyList<ExportColumn> Columns, IReadOnlyList<object?[]> Rows);

/// <summary>
/// research export: a table of the run store (runs, stages, metrics, evaluations) as CSV, JSON Lines or Parquet,
/// written atomically with its provenance sidecar (and, in Parquet, the manifest in the footer's key-value metadata).
/// The columns are the store's (docs/provenance.md).
/// </summary>
public static class StoreExport
{
    public static readonly string[] Tables = ["runs", "stages", "metrics", "evaluations"];
    public static readonly string[] Formats = ["csv", "jsonl", "parquet"];

    static ExportColumn L(string n) => new(n, ExportColumnType.Int64);
    static ExportColumn D(string n) => new(n, ExportColumnType.Double);
    static ExportColumn S(string n) => new(n, ExportColumnType.String);

    public static ExportTable Table(RunStore store, string what)
    {
        ArgumentNullException.ThrowIfNull(store);
        return what switch
        {
            "runs" => new("runs", [L("run"), S("experiment"), S("point"), L("seed"), S("status"), S("started"), S("finished")],
                store.Runs().Select(r => new object?[] { r.Id, r.Experiment, r.Point, r.Seed, r.Status, r.Started, r.Finished }).ToList()),
            "stages" => new("stages", [L("run"), S("key"), S("name"), S("kind"), S("status"), S("config"), S("parents"), S("started"), S("finished"), D("seconds"), S("checkpoint")],
                store.AllNodes().Select(n => new object?[] { n.RunId, n.Key, n.Name, n.Kind, n.Status, n.Config, n.Parents, n.Started, n.Finished, n.Seconds, n.Checkpoint }).ToList()),
            "metrics" => new("metrics", [S("node_key"), L("step"), S("kind"), S("name"), D("value")],
                store.AllMetrics().Select(m => new object?[] { m.NodeKey, m.Step, m.Kind, m.Name, m.Value }).ToList()),
            "evaluations" => Evaluations(store),
            _ => throw new ArgumentException($"cannot export '{what}': the run store's tables are {string.Join(", ", Tables)}"),
        };
    }

    static ExportTable Evaluations(RunStore store)
    {
        var stage = store.AllNodes().GroupBy(n => (n.RunId, n.Key)).ToDictionary(g => g.Key, g => g.First().Name);
        return new("evaluations", [L("run"), S("node_key"), S("stage"), S("suite"), S("metric"), D("value")],
            store.AllEvaluations().Select(e => new object?[] { e.RunId, e.NodeKey, stage.GetValueOrDefault((e.RunId, e.NodeKey)), e.Suite, e.Metric, e.Value }).ToList());
    }

    /// <summary>Writes the table to <paramref name="path"/> in <paramref name="format"/> (csv, jsonl, parquet), atomically, and its sidecar.</summary>
    public static void Write(ExportTable table, string format, string path, Manifest manifest)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(manifest);
        var named = manifest with { File = Path.GetFileName(path) };
        switch (format)
        {
            case "csv": AtomicFile.Write(path, s => Csv(table, s)); break;
            case "jsonl": AtomicFile.Write(path, s => JsonLines(table, s)); break;
            case "parquet": AtomicFile.Write(path, s => Parquet(table, s, named)); break;
            default: throw new ArgumentException($"unknown export format '{format}': use one of {string.Join(", ", Formats)}");
        }
        ManifestFiles.WriteSidecar(path, named);
    }

    static void Csv(ExportTable t, Stream s)
    {
        using var w = new StreamWriter(s, new UTF8Encoding(false), leaveOpen: true) { NewLine = "\n" };
        w.WriteLine(string.Join(",", t.Columns.Select(c => Quote(c.Name))));
        foreach (var row in t.Rows)
            w.WriteLine(string.Join(",", row.Select(v => v switch
            {
                null => "",
                double d => d.ToString("R", CultureInfo.InvariantCulture),
                long l => l.ToString(CultureInfo.InvariantCulture),
                _ => Quote(Convert.ToString(v, CultureInfo.InvariantCulture) ?? ""),
            })));
    }

    static string Quote(string s) => s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    /// <summary>One JSON object a line; a NaN or infinite number (which JSON cannot hold) is written as null.</summary>
    static void JsonLines(ExportTable t, Stream s)
    {
        foreach (var row in t.Rows)
        {
            using (var w = new Utf8JsonWriter(s))
            {
                w.WriteStartObject();
                for (var i = 0; i < t.Columns.Count; i++)
                {
                    var name = t.Columns[i].Name;
                    switch (row[i])
                    {
                        case null: w.WriteNull(name); break;
                        case double d when !double.IsFinite(d): w.WriteNull(name); break;
                        case double d: w.WriteNumber(name, d); break;
                        case long l: w.WriteNumber(name, l); break;
                        case var v: w.WriteString(name, Convert.ToString(v, CultureInfo.InvariantCulture)); break;
                    }
                }
                w.WriteEndObject();
            }
            s.WriteByte((byte)'\n');
        }
    }

    static DataField Field(ExportColumn c) => c.Type switch
    {
        ExportColumnType.Int64 => new DataField<long>(c.Name),
        ExportColumnType.Double => new DataField<double>(c.Name),
        _ => new DataField<string>(c.Name, true),
    };

    /// <summary>One row group; int64, double and nullable string columns; the manifest under <see cref="ManifestFiles.Key"/> in the footer.</summary>
    static void Parquet(ExportTable t, Stream s, Manifest manifest)
    {
        var fields = t.Columns.Select(Field).ToArray();
        Task.Run(async () =>
        {
            await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), s);
            writer.CustomMetadata = new Dictionary<string, string> { [ManifestFiles.Key] = manifest.ToCompactJson() };
            using var group = writer.CreateRowGroup();
            for (var i = 0; i < fields.Length; i++)
            {
                var column = i;
                switch (t.Columns[i].Type)
                {
                    case ExportColumnType.Int64:
                        await group.WriteAsync<long>(fields[i], t.Rows.Select(r => (long)r[column]!).ToArray());
                        break;
                    case ExportColumnType.Double:
                        await group.WriteAsync<double>(fields[i], t.Rows.Select(r => (double)r[column]!).ToArray());
                        break;
                    default:
                        await group.WriteAsync(fields[i], t.Rows.Select(r => (string?)r[column]).ToArray()!);
                        break;
                }
            }
        }).GetAwaiter().GetResult();
    }

    /// <summary>A key of a Parquet file's footer metadata, or null.</summary>
    public static string? ParquetMetadata(string path, string key) => Task.Run(async () =>
    {
        try
        {
            await using var reader = await ParquetReader.CreateAsync(path);
            return reader.CustomMetadata.TryGetValue(key, out var v) ? v : null;
        }
        catch (Exception e) when (e is ParquetException or IOException) { return null; }
    }).GetAwaiter().GetResult();
}
