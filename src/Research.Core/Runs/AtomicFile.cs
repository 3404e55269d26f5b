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
    /// Replaces a whole directory atomically. The caller fills a sibling temp directory; its files and itself are synced to
    /// disk, then it is exchanged with <paramref name="dir"/> in one step (Linux renameat2 RENAME_EXCHANGE; a plain rename when
    /// there is no old one), the parent directory is synced, and the old contents are removed. A kill at any point leaves
    /// <paramref name="dir"/> whole, old or new. Where the file system cannot exchange, the old directory is moved aside
    /// first (<c>.old</c>) and the new one in: a kill between the two leaves no <paramref name="dir"/>, which
    /// <see cref="RecoverDirectory"/> (called here first, and by whoever opens the directory) puts back.
    /// </summary>
    public static void WriteDirectory(string dir, Action<string> fill)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        RecoverDirectory(full);
        var tmp = DirectoryLeftovers.NewName(full, DirectoryLeftovers.TmpSuffix);
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            SyncTree(tmp);
            Fault("filled");
            if (!Directory.Exists(full))
            {
                Directory.Move(tmp, full);
                Fault("moved-in");
                FileSystemCalls.SyncDirectory(parent);
                return;
            }
            if (!ForceTwoRenames.Value && FileSystemCalls.TryExchange(tmp, full))
            {
                Fault("exchanged");                                   // tmp now holds the old contents
                FileSystemCalls.SyncDirectory(parent);
                Fault("synced");
                Directory.Delete(tmp, recursive: true);
                return;
            }
            // No atomic exchange here: two renames, with the .old kept until the new one is in (RecoverDirectory undoes a kill between).
            var old = DirectoryLeftovers.NewName(full, DirectoryLeftovers.OldSuffix);
            Directory.Move(full, old);
            Fault("moved-aside");
            Directory.Move(tmp, full);
            Fault("moved-in");
            FileSystemCalls.SyncDirectory(parent);
            Fault("synced");
            Directory.Delete(old, recursive: true);
        }
        catch
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Undoes what a kill inside <see cref="WriteDirectory"/> left beside <paramref name="dir"/>: when the directory is missing
    /// and a complete <c>.old</c> copy of it exists, the copy is renamed back; then every <c>.tmp</c> and <c>.old</c>
    /// leftover of a process that is no longer running is removed. Call it, holding whatever lock guards the directory's
    /// writers, where the directory is opened (a stage's checkpoint at resume). Returns what was done, for the log.
    /// </summary>
    public static IReadOnlyList<string> RecoverDirectory(string dir)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var done = new List<string>();
        var leftovers = DirectoryLeftovers.Find(full).Where(l => !l.OwnerRunning).ToList();
        if (leftovers.Count == 0) return done;
        if (!Directory.Exists(full) && leftovers.Where(l => l.IsOld).OrderByDescending(l => Directory.GetLastWriteTimeUtc(l.Path)).FirstOrDefault() is { } back)
        {
            Directory.Move(back.Path, full);
            leftovers.Remove(back);
            done.Add($"restored {full} from {Path.GetFileName(back.Path)} (a replace was interrupted)");
        }
        foreach (var l in leftovers)
        {
            Directory.Delete(l.Path, recursive: true);
            done.Add($"removed the leftover {Path.GetFileName(l.Path)}");
        }
        FileSystemCalls.SyncDirectory(Path.GetDirectoryName(full)!);
        return done;
    }

    /// <summary>Syncs every file under <paramref name="dir"/>, and the directories themselves, so a rename publishes data on disk.</summary>
    static void SyncTree(string dir)
    {
        foreach (var file in Directory.EnumerateFiles(dir))
        {
            using var s = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, 1);
            s.Flush(flushToDisk: true);
        }
        foreach (var sub in Directory.EnumerateDirectories(dir)) SyncTree(sub);
        FileSystemCalls.SyncDirectory(dir);
    }

    /// <summary>Test seam: called between the steps of <see cref="WriteDirectory"/> with the step just done, in this flow only.</summary>
    internal static readonly AsyncLocal<Action<string>?> FaultHook = new();
    /// <summary>Test seam: take the two-rename path even where the file system can exchange, in this flow only.</summary>
    internal static readonly AsyncLocal<bool> ForceTwoRenames = new();

    /// <summary>Test seam: called by <see cref="PendingFile.Commit"/> with the target's path and "written" (the temp file is
    /// on disk, not yet renamed) or "renamed", in this flow only.</summary>
    internal static readonly AsyncLocal<Action<string, string>?> FileFaultHook = new();

    static void Fault(string step) => FaultHook.Value?.Invoke(step);

    internal static void FileFault(string path, string step) => FileFaultHook.Value?.Invoke(path, step);
}
