namespace Research.Cli;

/// <summary>Options every command shares, parsed from --name value pairs; the rest stays positional.</summary>
public sealed record CliArgs(IReadOnlyDictionary<string, string> Options, IReadOnlyList<string> Positional, ISet<string> Flags)
{
    /// <summary>Every command takes these (the run store's location).</summary>
    public static readonly string[] Common = ["workspace", "store"];

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

    /// <summary>
    /// <paramref name="flags"/> take no value (<c>--flag</c>, or <c>--flag=true</c> / <c>--flag=false</c>); <paramref name="options"/>
    /// (and <see cref="Common"/>) take one (<c>--name value</c> or <c>--name=value</c>). Any other --name is a usage error.
    /// </summary>
    public static CliArgs Parse(IEnumerable<string> args, string[] flags, params string[] options)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(flags);
        var known = options.Concat(Common).ToHashSet(StringComparer.Ordinal);
        var values = new Dictionary<string, string>();
        var positional = new List<string>();
        var seen = new HashSet<string>();
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            var a = e.Current;
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2) { positional.Add(a); continue; }
            var name = a[2..];
            string? value = null;
            var eq = name.IndexOf('=');
            if (eq > 0) (name, value) = (name[..eq], name[(eq + 1)..]);
            if (flags.Contains(name))
            {
                var on = value switch
                {
                    null or "true" => true,
                    "false" => false,
                    _ => throw new CliException($"--{name} takes no value (or =true / =false), got '{value}'"),
                };
                if (on) seen.Add(name); else seen.Remove(name);
                continue;
            }
            if (!known.Contains(name))
                throw new CliException($"unknown option --{name} (known here: {string.Join(", ", flags.Concat(known).Select(k => "--" + k))})");
            if (value is null)
            {
                if (!e.MoveNext()) throw new CliException($"--{name} needs a value");
                value = e.Current;
            }
            values[name] = value;
        }
        return new CliArgs(values, positional, seen);
    }
}

/// <summary>A usage error: printed without a stack trace, exit code 2.</summary>
public sealed class CliException(string message) : Exception(message);
