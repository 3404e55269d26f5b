using System.Globalization;

namespace Research.Runs;

/// <summary>
/// The sibling directories <see cref="AtomicFile.WriteDirectory"/> makes beside a target, <c>NAME.PID.GUID.tmp</c> (being
/// filled, or after an exchange the old contents) and <c>NAME.PID.GUID.old</c> (the old contents moved aside), and whether
/// the process that made one still runs.
/// </summary>
static class DirectoryLeftovers
{
    public const string TmpSuffix = ".tmp";
    public const string OldSuffix = ".old";

    public sealed record Leftover(string Path, bool IsOld, bool OwnerRunning);

    public static string NewName(string full, string suffix) => $"{full}.{Environment.ProcessId}.{Guid.NewGuid():N}{suffix}";

    public static IEnumerable<Leftover> Find(string full)
    {
        var parent = Path.GetDirectoryName(full)!;
        var name = Path.GetFileName(full);
        if (!Directory.Exists(parent)) yield break;
        foreach (var path in Directory.EnumerateDirectories(parent, name + ".*"))
        {
            var entry = Path.GetFileName(path);
            if (entry.Length <= name.Length + 1 || !entry.StartsWith(name + ".", StringComparison.Ordinal)) continue;   // the pattern also matches NAME itself
            var rest = entry[(name.Length + 1)..];
            var isOld = rest.EndsWith(OldSuffix, StringComparison.Ordinal);
            if (!isOld && !rest.EndsWith(TmpSuffix, StringComparison.Ordinal)) continue;
            var parts = rest.Split('.');
            // NAME.PID.GUID.tmp|old, or NAME.GUID.old as earlier versions named it (no pid: its writer is long gone)
            if (parts is not ([_, _, _] or [_, _])) continue;
            if (parts[^2].Length != 32 || !parts[^2].All(Uri.IsHexDigit)) continue;
            var running = parts.Length == 3 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                          && pid != Environment.ProcessId && ProcessIdentity.IsRunning(pid);
            yield return new Leftover(path, isOld, running);
        }
    }
}
