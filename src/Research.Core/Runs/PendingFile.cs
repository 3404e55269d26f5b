namespace Research.Runs;

/// <summary>
/// A file written so a reader never sees half of it: the bytes go to a sibling temp file, which <see cref="Commit"/>
/// flushes to disk and renames into place, then syncs the directory. Disposed without a commit, the temp file is removed.
/// </summary>
public sealed class PendingFile : IDisposable
{
    readonly string _path;
    readonly string _tmp;
    FileStream? _stream;
    bool _committed;

    /// <param name="bufferSize">The stream's buffer; 0 writes straight through (for callers that write large spans).</param>
    public PendingFile(string path, int bufferSize = 1 << 20)
    {
        _path = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _tmp = $"{_path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        _stream = new FileStream(_tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize);
    }

    /// <summary>The temp file's stream (seekable).</summary>
    public FileStream Stream => _stream ?? throw new ObjectDisposedException(nameof(PendingFile), $"{_path} is already committed or abandoned");

    /// <summary>Flushes the temp file to disk and renames it over the target.</summary>
    public void Commit()
    {
        var s = Stream;
        s.Flush(flushToDisk: true);
        s.Dispose();
        _stream = null;
        AtomicFile.FileFault(_path, "written");
        File.Move(_tmp, _path, overwrite: true);
        _committed = true;
        AtomicFile.FileFault(_path, "renamed");
        FileSystemCalls.SyncDirectory(Path.GetDirectoryName(_path)!);                     // the rename itself, durable

    }

    public void Dispose()
    {
        _stream?.Dispose();
        _stream = null;
        if (!_committed && File.Exists(_tmp)) File.Delete(_tmp);
    }
}
