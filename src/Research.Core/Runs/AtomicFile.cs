namespace Research.Runs;

/// <summary>Writes files so a reader never sees half of one: temp file, flush to disk, rename.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        using var file = new PendingFile(path);
        write(file.Stream);
        file.Commit();
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, s => { var b = System.Text.Encoding.UTF8.GetBytes(text); s.Write(b); });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    /// <summary>
    /// Replaces a whole directory atomically: the caller fills a sibling temp directory, which is
    /// then renamed over <paramref name="dir"/> (the old one is moved aside first and removed after).
    /// </summary>
    public static void WriteDirectory(string dir, Action<string> fill)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = $"{full}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            string? old = null;
            if (Directory.Exists(full))
            {
                old = $"{full}.{Guid.NewGuid():N}.old";
                Directory.Move(full, old);
            }
            Directory.Move(tmp, full);
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        catch
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            throw;
        }
    }
}
