namespace Research.Cli;

/// <summary>Options every command shares, parsed from --name value pairs; the rest stays positional.</summary>
public sealed record CliArgs(IReadOnlyDictionary<string, string> Options, IReadOnlyList<string> Positional, ISet<string> Flags)
{
    /// <summary>--workspace DIR, else RESEARCH_WORKSPACE, else ./runs.</summary>
    public string Workspace => Path.GetFullPath(
        Options.TryGetValue("workspace", out var w) ? w
        : Environment.GetEnvironmentVariable("RESEARCH_WORKSPACE") is { Length: > 0 } e ? e
        : "runs");

    public string? Get(string name) => Options.TryGetValue(name, out var v) ? v : null;

    public int GetInt(string name, int fallback) =>
        Get(name) is { } v ? int.TryParse(v, out var i) ? i : throw new CliException($"--{name} expects an integer, got '{v}'") : fallback;

    public double GetDouble(string name, double fallback) =>
        Get(name) is { } v ? double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out var d) ? d : throw new CliException($"--{name} expects a number, got '{v}'") : fallback;

    /// <summary>Flags take no value; every other --option takes the next argument.</summary>
    public static CliArgs Parse(IEnumerable<string> args, params string[] flags)
    {
        var options = new Dictionary<string, string>();
        var positional = new List<string>();
        var seen = new HashSet<string>();
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            var a = e.Current;
            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                var name = a[2..];
                var eq = name.IndexOf('=');
                if (eq > 0) { options[name[..eq]] = name[(eq + 1)..]; continue; }
                if (flags.Contains(name)) { seen.Add(name); continue; }
                if (!e.MoveNext()) throw new CliException($"--{name} needs a value");
                options[name] = e.Current;
            }
            else positional.Add(a);
        }
        return new CliArgs(options, positional, seen);
    }
}

/// <summary>A usage error: printed without a stack trace, exit code 2.</summary>
public sealed class CliException(string message) : Exception(message);
