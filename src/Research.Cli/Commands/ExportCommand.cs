using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>
/// research export [runs|stages|metrics|evaluations] --format csv|jsonl|parquet [--out FILE]: one table of the run store,
/// written atomically with its provenance sidecar (docs/provenance.md).
/// </summary>
public static class ExportCommand
{
    public static readonly string[] Options = ["format", "out"];

    public static int Execute(CliArgs a)
    {
        ArgumentNullException.ThrowIfNull(a);
        const string usage = "usage: research export [runs|stages|metrics|evaluations] --format csv|jsonl|parquet [--out FILE] [--workspace DIR]";
        if (a.Positional.Count > 1) throw new CliException(usage);
        var what = a.Positional.Count == 1 ? a.Positional[0] : "evaluations";
        if (!StoreExport.Tables.Contains(what)) throw new CliException($"research export: no table '{what}' (tables: {string.Join(", ", StoreExport.Tables)})\n{usage}");
        var format = a.Get("format") ?? throw new CliException($"research export: --format is required\n{usage}");
        if (!StoreExport.Formats.Contains(format)) throw new CliException($"research export: unknown format '{format}' (formats: {string.Join(", ", StoreExport.Formats)})");
        using var store = RunsCommand.Open(a);
        var out_ = Path.GetFullPath(a.Get("out") ?? $"{what}.{format}");
        var table = StoreExport.Table(store, what);
        StoreExport.Write(table, format, out_, Research.Pipelines.Manifests.Of(store));
        Console.WriteLine($"{table.Rows.Count} {what} row(s) from {store.Path} -> {out_} (+ {Path.GetFileName(Manifest.SidecarOf(out_))})");
        return 0;
    }
}
