namespace Research.Pipelines;

/// <summary>
/// The exclusive lock file <c>nodes/&lt;kind&gt;-&lt;key&gt;.lock</c>, held for the life of a node's run (released by the OS if
/// the process dies): a second process asking for the same node waits for it, and <c>research gc</c> leaves a locked node alone.
/// </summary>
public sealed class NodeLock : IDisposable
{
    readonly FileStream _stream;
    NodeLock(FileStream stream) => _stream = stream;

    /// <summary>The lock file of the node directory <paramref name="nodeDir"/>.</summary>
    public static string PathOf(string nodeDir) => Path.TrimEndingDirectorySeparator(nodeDir) + ".lock";

    /// <summary>Waits (polling) until the lock is free, saying once that it waits.</summary>
    public static NodeLock Acquire(string path, TextWriter log, string name)
    {
        var told = false;
        while (true)
        {
            if (TryAcquire(path) is { } held) return held;
            if (!told) { log.WriteLine($"  {name}: another process is running this stage; waiting for it"); told = true; }
            Thread.Sleep(500);
        }
    }

    /// <summary>The lock, or null when another process (or this one) holds it.</summary>
    public static NodeLock? TryAcquire(string path)
    {
        try
        {
            return new NodeLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException) when (File.Exists(path))
        {
            return null;
        }
    }

    public void Dispose() => _stream.Dispose();
}
