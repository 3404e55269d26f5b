using System.Globalization;

namespace Research.Runs;

/// <summary>
/// What a run recorded as <c>running</c> really is. A killed process never records its end, so the store keeps who runs
/// it (<see cref="ProcessIdentity"/>: boot id, pid, start time, and the host) and a heartbeat the process refreshes every
/// <see cref="HeartbeatEvery"/>. On the same host the process itself is asked (a reused pid has another start time); on
/// another host, or for a row of an older store with neither, a heartbeat (else the start) older than
/// <see cref="StaleAfter"/> means the process is gone.
/// </summary>
public static class RunLiveness
{
    public const string Running = "running";
    public const string Interrupted = "interrupted";
    public static readonly TimeSpan HeartbeatEvery = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(3);

    /// <summary>The status to show: <paramref name="recorded"/>, or <see cref="Interrupted"/> for a running run whose process is gone.</summary>
    public static string Status(string recorded, string? process, string? host, string? heartbeat, string started, DateTimeOffset now)
    {
        if (recorded != Running) return recorded;
        if (host == Environment.MachineName && ProcessIdentity.Parse(process) is { } who)
            return ProcessIdentity.IsRunning(who) ? Running : Interrupted;
        var last = heartbeat ?? started;
        return DateTimeOffset.TryParse(last, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var t) && now - t > StaleAfter ? Interrupted : Running;
    }
}
