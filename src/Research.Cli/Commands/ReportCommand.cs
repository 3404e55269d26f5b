using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>
/// research report RUN|EXPERIMENT --out DIR [--metrics m1,m2] [--paper]: training curves, an evaluation-by-stage figure
/// per evaluation metric (HTML, PNG, SVG, PDF) and LaTeX / Markdown tables of recorded runs, aggregated over their seeds
/// (docs/figures.md). --paper: column-sized figures in the paper style and summary.md of which differences hold.
/// </summary>
public static class ReportCommand
{
    public static readonly string[] Options = ["out", "metrics"];
    public static readonly string[] Flags = ["paper", "html-only"];

    public static int Execute(CliArgs a)
    {
        if (a.Positional.Count != 1) throw new CliException("usage: research report RUN|EXPERIMENT [--out DIR] [--metrics m1,m2] [--paper] [--html-only] (see `research runs`)");
        using var store = RunsCommand.Open(a);
        Microsoft.FSharp.Collections.FSharpList<RunRecord> runs;
        try { runs = RunReport.resolve(store, a.Positional[0]); }
        catch (Exception e) when (e.GetType() == typeof(Exception)) { throw new CliException(e.Message); }
        var outDir = Path.GetFullPath(a.Get("out") ?? Path.Combine("report", RunReport.slug(a.Positional[0])));
        var metrics = (a.Get("metrics") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var options = new RunReport.Options(Microsoft.FSharp.Collections.ListModule.OfArray(metrics), a.Flags.Contains("paper"), a.Flags.Contains("html-only"));
        var files = RunReport.writeWith(options, store, runs, outDir);
        Console.WriteLine($"report of {string.Join(", ", runs.Select(r => $"run {r.Id} [{r.Point}]"))} in {outDir}:");
        foreach (var f in files) Console.WriteLine($"  {Path.GetFileName(f)}");
        return 0;
    }
}
