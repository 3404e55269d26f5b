namespace Research.Backend;

/// <summary>
/// The CPU as /proc/cpuinfo describes its first processor: the model name and the feature flags (x86's "flags" line,
/// aarch64's "Features" line). What bf16 detection and the bench's machine record read.
/// </summary>
public sealed record CpuInfo(string Model, IReadOnlyList<string> Flags)
{
    public const string ProcPath = "/proc/cpuinfo";

    public bool Has(string flag) => Flags.Contains(flag, StringComparer.Ordinal);

    /// <summary>The first processor's model and flags from the text of /proc/cpuinfo; null when it has no flags line.</summary>
    public static CpuInfo? Parse(string text)
    {
        string? model = null;
        IReadOnlyList<string>? flags = null;
        foreach (var raw in text.Split('\n'))
        {
            var colon = raw.IndexOf(':');
            if (colon < 0) continue;
            var key = raw[..colon].Trim();
            var value = raw[(colon + 1)..].Trim();
            if (model is null && key is "model name" or "Model" or "cpu model") model = value;
            else if (flags is null && key is "flags" or "Features")
                flags = value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (model is not null && flags is not null) break;
        }
        return flags is null ? null : new CpuInfo(model ?? "unknown", flags);
    }

    static readonly Lazy<CpuInfo?> Here = new(() =>
    {
        try { return File.Exists(ProcPath) ? Parse(File.ReadAllText(ProcPath)) : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    });

    /// <summary>This machine's CPU (read once), or null where there is no readable /proc/cpuinfo with a flags line.</summary>
    public static CpuInfo? Current => Here.Value;
}
