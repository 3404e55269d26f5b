namespace Research.Stages.Merge;

/// <summary>
/// Merge config errors at a path of the config ("models[1].parameters.density"): the path rides along in the exception's
/// Data, and reading YAML turns it into the line it came from (<see cref="WithLine"/>), so every error names the line to fix.
/// </summary>
static class MergeConfigError
{
    const string PathKey = "merge_config_path";

    /// <summary>An error about <paramref name="path"/> (the names the messages use; "" for the whole config).</summary>
    public static InvalidDataException At(string path, string message)
    {
        var e = new InvalidDataException(message);
        e.Data[PathKey] = path;
        return e;
    }

    /// <summary>The error with "YAML line N: " in front, N the line of the longest prefix of its path that has one.</summary>
    public static InvalidDataException WithLine(InvalidDataException e, IReadOnlyDictionary<string, int> lines)
    {
        if (e.Data[PathKey] is not string path) return e;
        for (var p = path; p.Length > 0; p = Parent(p))
            if (lines.TryGetValue(p, out var line)) return new InvalidDataException($"YAML line {line}: {e.Message}", e);
        return e;
    }

    /// <summary>"a.b[2]" → "a.b" → "a" → "".</summary>
    static string Parent(string path)
    {
        var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
        return cut <= 0 ? "" : path[..cut];
    }
}
