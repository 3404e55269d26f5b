using System.Globalization;

namespace Research.Runs;

/// <summary>
/// The temp files <see cref="PendingFile"/> leaves beside a target when its process is killed before the rename,
/// <c>NAME.PID.GUID.tmp</c>, and their removal once that process no longer runs.
/// </summary>
public static class FileLeftovers
{
    /// <summary>
    /// Removes, in <paramref name="dir"/> and its <c>eval/</c> folder, every such file of a process that no longer runs (this
    /// process's own count as gone: call it where this process alone writes the directory, e.g. under a node's lock).
    /// Returns the names removed, for the log.
    /// </summary>
    public static IReadOnlyList<string> Remove(string dir)
    {
        var removed = new List<string>();
        foreach (var d in new[] { dir, Path.Combine(dir, "eval") })
        {
            if (!Directory.Exists(d)) continue;
            foreach (var path in Directory.EnumerateFiles(d, "*.tmp"))
            {
                if (!IsStale(Path.GetFileName(path))) continue;
                File.Delete(path);
                removed.Add(Path.GetRelativePath(dir, path));
            }
        }
        return removed;
    }

    /// <summary>NAME.PID.GUID.tmp whose PID is this process or one that no longer runs.</summary>
    static bool IsStale(string name)
    {
        var parts = name.Split('.');
        if (parts.Length < 4 || parts[^1] != "tmp") return false;
        var guid = parts[^2];
        if (guid.Length != 32 || !guid.All(Uri.IsHexDigit)) return false;
        if (!int.TryParse(parts[^3], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return false;
        return pid == Environment.ProcessId || !ProcessIdentity.IsRunning(pid);
    }
}
