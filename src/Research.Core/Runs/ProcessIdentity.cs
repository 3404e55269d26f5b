using System.Diagnostics;
using System.Globalization;

namespace Research.Runs;

/// <summary>
/// A process named so that a reused pid is not taken for it: the pid, its start time (clock ticks since boot, from
/// /proc/PID/stat) and the boot id. <see cref="IsRunning(ProcessIdentity)"/> is true only for that very process.
/// </summary>
public sealed record ProcessIdentity(int Pid, long StartTicks, string BootId)
{
    static readonly Lazy<ProcessIdentity> CurrentIdentity = new(() => Of(Environment.ProcessId) ?? new ProcessIdentity(Environment.ProcessId, 0, ""));

    /// <summary>This process.</summary>
    public static ProcessIdentity Current => CurrentIdentity.Value;

    /// <summary>The running process <paramref name="pid"/>, or null when there is none.</summary>
    public static ProcessIdentity? Of(int pid)
    {
        if (OperatingSystem.IsLinux())
        {
            var start = LinuxStartTicks(pid);
            return start is null ? null : new ProcessIdentity(pid, start.Value, BootIdNow());
        }
        try
        {
            using var p = Process.GetProcessById(pid);
            return new ProcessIdentity(pid, p.StartTime.ToUniversalTime().Ticks, "");
        }
        catch (ArgumentException) { return null; }
        catch (InvalidOperationException) { return null; }
    }

    /// <summary>Whether any process has this pid now (for names that carry a pid only).</summary>
    public static bool IsRunning(int pid) => Of(pid) is not null;

    /// <summary>Whether this very process still runs: same boot, same pid, same start time.</summary>
    public static bool IsRunning(ProcessIdentity who) =>
        Of(who.Pid) is { } now && now.StartTicks == who.StartTicks && now.BootId == who.BootId;

    /// <summary>"boot:pid:start", what the run store keeps.</summary>
    public override string ToString() => $"{BootId}:{Pid}:{StartTicks}";

    /// <summary>Reads <see cref="ToString"/>'s form; null for anything else.</summary>
    public static ProcessIdentity? Parse(string? text)
    {
        var parts = text?.Split(':');
        if (parts is not [var boot, var pid, var start]) return null;
        return int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && long.TryParse(start, NumberStyles.None, CultureInfo.InvariantCulture, out var s)
            ? new ProcessIdentity(p, s, boot) : null;
    }

    static long? LinuxStartTicks(int pid)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted after the last ')'.
        // starttime is field 22, the 20th after comm.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return fields.Length > 19 && long.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var t) ? t : null;
    }

    static string BootIdNow()
    {
        try { return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(); }
        catch (IOException) { return ""; }
    }
}
