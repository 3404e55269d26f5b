using System.Runtime.InteropServices;

namespace Research.Runs;

/// <summary>
/// The two file-system calls .NET does not offer: an atomic exchange of two paths (Linux renameat2 with RENAME_EXCHANGE)
/// and fsync of a directory, which makes the renames inside it durable; and starting a file's writeback early
/// (sync_file_range), so that the fsync at the end of a long write has little left to flush.
/// </summary>
static partial class FileSystemCalls
{
    const int AtFdCwd = -100;
    const uint RenameExchange = 2;
    const int ORdOnly = 0, ODirectory = 0x10000, OCloExec = 0x80000;
    const int ENOSYS = 38, EINVAL = 22, EOPNOTSUPP = 95;

    [LibraryImport("libc", EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameAt2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long nbytes, uint flags);

    const uint SyncFileRangeWrite = 2;

    static bool _exchangeUnavailable, _writebackUnavailable;

    /// <summary>
    /// Asks the kernel to start writing the file's dirty pages to disk now (sync_file_range with SYNC_FILE_RANGE_WRITE: it
    /// waits for nothing and makes nothing durable by itself). A writer that calls it as it goes overlaps the disk's work with
    /// its own, and the fsync of <see cref="PendingFile.Commit"/> then finds little left to flush. Best effort: off Linux, or
    /// where the file system refuses, it does nothing.
    /// </summary>
    public static void StartWriteback(Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        if (!OperatingSystem.IsLinux() || _writebackUnavailable) return;
        try
        {
            if (SyncFileRange(file, 0, 0, SyncFileRangeWrite) != 0 && Marshal.GetLastPInvokeError() is ENOSYS or EINVAL or EOPNOTSUPP)
                _writebackUnavailable = true;
        }
        catch (EntryPointNotFoundException) { _writebackUnavailable = true; }
    }

    /// <summary>
    /// Swaps <paramref name="a"/> and <paramref name="b"/> (both must exist) in one step: a reader, or a kill, sees the
    /// one or the other, never neither. False where the platform or file system has no atomic exchange (not Linux,
    /// a libc without renameat2, or ENOSYS/EINVAL/EOPNOTSUPP from the file system): the caller falls back to two renames.
    /// </summary>
    public static bool TryExchange(string a, string b)
    {
        if (!OperatingSystem.IsLinux() || _exchangeUnavailable) return false;
        int rc;
        try { rc = RenameAt2(AtFdCwd, a, AtFdCwd, b, RenameExchange); }
        catch (EntryPointNotFoundException) { _exchangeUnavailable = true; return false; }
        if (rc == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno is ENOSYS or EINVAL or EOPNOTSUPP) return false;   // this file system cannot exchange; another might
        throw new IOException($"cannot exchange {a} and {b}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }

    /// <summary>Flushes a directory's entries (the renames and creations inside it) to disk. A no-op off Linux.</summary>
    public static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        var fd = Open(dir, ORdOnly | ODirectory | OCloExec);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"cannot open directory {dir} to sync it: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        }
        try
        {
            if (FSync(fd) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno != EINVAL) throw new IOException($"cannot sync directory {dir}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
            }
        }
        finally { Close(fd); }
    }
}
