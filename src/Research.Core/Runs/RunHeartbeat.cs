namespace Research.Runs;

/// <summary>
/// Refreshes a run's heartbeat every <see cref="RunLiveness.HeartbeatEvery"/> while the run lasts, on its own store
/// connection (a connection is not shared between threads), so another host can tell a live run from a lost one.
/// A failed beat is ignored: the next one tries again, and a store that stays unreachable fails the run's own writes.
/// </summary>
public sealed class RunHeartbeat : IDisposable
{
    readonly Func<RunStore> _open;
    readonly long _runId;
    readonly Timer _timer;
    readonly object _gate = new();
    RunStore? _store;
    bool _disposed;

    public RunHeartbeat(Func<RunStore> open, long runId)
    {
        _open = open;
        _runId = runId;
        _timer = new Timer(_ => Beat(), null, RunLiveness.HeartbeatEvery, RunLiveness.HeartbeatEvery);
    }

    void Beat()
    {
        lock (_gate)
        {
            if (_disposed) return;
            try
            {
                _store ??= _open();
                _store.Beat(_runId);
            }
            catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or InvalidDataException or IOException)
            {
                _store?.Dispose();
                _store = null;
            }
        }
    }

    public void Dispose()
    {
        _timer.Dispose();
        lock (_gate)
        {
            _disposed = true;
            _store?.Dispose();
        }
    }
}
