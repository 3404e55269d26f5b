using Research.Pipelines;
using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>
/// research provenance FILE [--data NAME=PATH,...]: the manifest of an export (its sidecar, else the one inside it) and,
/// per stage, whether this build's code and the data would still produce the same stage. Exit 0 when every stage is the
/// same, 3 when one is not or cannot be checked, 1 when the file has no manifest (docs/provenance.md).
/// </summary>
public static class ProvenanceCommand
{
    public static readonly string[] Options = ["data"];

    public static int Execute(CliArgs a) => Execute(a, Console.Out);

    public static int Execute(CliArgs a, TextWriter o)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(o);
        if (a.Positional.Count != 1) throw new CliException("usage: research provenance FILE [--data NAME=PATH,NAME=PATH]");
        var file = Path.GetFullPath(a.Positional[0]);
        var manifest = ManifestFiles.Read(file)
            ?? throw new InvalidDataException($"{file}: no provenance manifest (no {Path.GetFileName(Manifest.SidecarOf(file))} beside it, none inside); export it again with this build to get one");
        var paths = DataPaths(a.Get("data"));
        var where = File.Exists(Manifest.SidecarOf(file)) ? Path.GetFileName(Manifest.SidecarOf(file)) : "inside the file";
        o.WriteLine($"{file}: provenance ({where})");
        var unchanged = ManifestFiles.Unchanged(file, manifest);
        o.WriteLine($"  file       {manifest.File ?? Path.GetFileName(file)}{unchanged switch { true => " (unchanged since written)", false => " (CHANGED since the manifest was written)", _ => "" }}");
        o.WriteLine($"  created    {manifest.Created}");
        o.WriteLine($"  commit     {manifest.Commit} (dirty: {manifest.Dirty}) in {manifest.Repository}");
        o.WriteLine($"  framework  {manifest.Framework}");
        if (manifest.Store is { } store) o.WriteLine($"  store      {store}");
        o.WriteLine($"  runs       {(manifest.Runs.Count == 0 ? "none" : string.Join(", ", manifest.Runs))}");
        o.WriteLine($"  seeds      {(manifest.Seeds.Count == 0 ? "none" : string.Join(", ", manifest.Seeds))}");
        if (manifest.Stages.Count == 0)
        {
            o.WriteLine("  stages     none: made from data that named no runs (pass a manifest, e.g. Provenance.ofResult, to save)");
            return 0;
        }
        o.WriteLine("  stages");
        foreach (var s in manifest.Stages)
            o.WriteLine($"    run {s.Run,-4} {s.Name,-24} {s.Kind,-10} {s.Key}  code {s.Code?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"}  seed {s.Seed}"
                        + (s.Data.Count > 0 ? "  data " + string.Join(", ", s.Data.Select(d => $"{d.Name}={d.Fingerprint[..Math.Min(12, d.Fingerprint.Length)]}")) : ""));
        var verdicts = ProvenanceCheck.Check(manifest, currentData: name =>
            paths.TryGetValue(name, out var p) ? ProvenanceCheck.FingerprintOf(p) : null);
        o.WriteLine("with this build's code and the data:");
        foreach (var v in verdicts)
        {
            var line = v.Status switch
            {
                ProvenanceCheck.Same => "same",
                ProvenanceCheck.Changed => $"changed: {string.Join("; ", v.Reasons)} (key {v.Key} -> {v.KeyNow})",
                _ => $"unknown: {string.Join("; ", v.Reasons)}",
            };
            o.WriteLine($"  {v.Name} ({v.Kind} {v.Key}): {line}");
            foreach (var n in v.Notes) o.WriteLine($"      note: {n}");
        }
        var same = verdicts.Count(v => v.Same);
        o.WriteLine(same == verdicts.Count ? $"all {same} stage(s) would be produced the same" : $"{verdicts.Count - same} of {verdicts.Count} stage(s) would not be produced the same (or cannot be checked)");
        return same == verdicts.Count ? 0 : 3;
    }

    static Dictionary<string, string> DataPaths(string? option)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in (option ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=');
            if (eq <= 0 || eq == part.Length - 1) throw new CliException($"--data expects NAME=PATH pairs separated by commas, got '{part}'");
            result[part[..eq]] = Path.GetFullPath(part[(eq + 1)..]);
        }
        return result;
    }
}
