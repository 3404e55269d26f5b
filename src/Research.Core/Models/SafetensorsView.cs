using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// Zero-copy tensors over a mapped safetensors file: the tensor's storage is the mapping itself, so reading a tensor costs
/// no copy and no anonymous memory (its pages are the file's, in the page cache, faulted in as they are touched). Used by the
/// streaming merge, which holds one tensor of each input at a time. The mapping is private copy-on-write, so a caller that
/// writes to a view changes only its own copy of those pages, never the file. When a view's storage is freed its pages are
/// dropped from this process's resident set (madvise DONTNEED; the page cache keeps them), and the mapping outlives
/// <see cref="Dispose"/> until the last view is freed.
/// </summary>
public sealed unsafe partial class SafetensorsFile
{
    readonly object _viewLock = new();
    readonly Dictionary<nint, (long Bytes, int Count)> _viewRanges = [];
    int _liveViews;
    bool _unmapWhenViewsFreed;
    StorageDeleter? _deleter;
    nint _deleterPointer;
    GCHandle _alive;                                             // held while views exist: their deleter calls back into this object

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void StorageDeleter(IntPtr data);

    // The constructor TorchSharp's own torch.tensor(array) calls with a pinned array; here the data is the mapped file.
    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_new(IntPtr rawArray, IntPtr deleter, long* dimensions, int numDimensions, sbyte type, sbyte dtype,
        int deviceType, int deviceIndex, [MarshalAs(UnmanagedType.U1)] bool requiresGrad);

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    static extern int MAdvise(IntPtr address, nuint length, int advice);

    const int MadvDontNeed = 4, MadvPopulateRead = 22, EInval = 22;
    static bool _populateUnavailable;

    /// <summary>
    /// The tensor <paramref name="name"/> as a CPU tensor whose storage is the mapped file (no copy), in the stored dtype.
    /// BOOL tensors (whose bytes must be validated), empty ones and data not aligned to its element size are copied instead
    /// (<see cref="Read"/>). The view may outlive this object: the mapping is released when the last view is freed.
    /// </summary>
    public Tensor View(string name)
    {
        var e = Entry(name);
        EnsureUnchanged();                                           // a view of pages past a shrunken end would fault later, in libtorch
        var type = Safetensors.ScalarTypeOf(e.DType);
        nint data;
        lock (_viewLock)
        {
            ObjectDisposedException.ThrowIf(_base == null, this);
            data = (nint)(_base + _dataStart + e.Begin);
            if (e.DType == "BOOL" || e.ByteLength == 0 || data % Safetensors.DTypeSize(e.DType) != 0) data = 0;
            else
            {
                if (_deleter is null)
                {
                    _deleter = Released;
                    _deleterPointer = Marshal.GetFunctionPointerForDelegate(_deleter);
                }
                _viewRanges[data] = _viewRanges.TryGetValue(data, out var r) ? (r.Bytes, r.Count + 1) : (e.ByteLength, 1);
                if (_liveViews++ == 0) _alive = GCHandle.Alloc(this);
            }
        }
        if (data == 0) return Read(name);
        PopulatePages(data, e.ByteLength);
        _ = CPU;                                                     // TorchSharp's native library is loaded before the call below
        var shape = e.Shape;
        IntPtr handle;
        fixed (long* dims = shape)
            handle = THSTensor_new(data, _deleterPointer, dims, shape.Length, (sbyte)type, (sbyte)type, (int)DeviceType.CPU, 0, false);
        if (handle == IntPtr.Zero)
        {
            Released(data);
            throw new SafetensorsException($"{Path}: libtorch could not make a tensor over the mapped bytes of '{name}'", Path, name);
        }
        return Tensor.UnsafeCreateTensor(handle);
    }

    /// <summary>Storage deleter (called by libtorch, on whichever thread frees the last reference): never throws.</summary>
    void Released(IntPtr data)
    {
        try
        {
            bool unmap;
            lock (_viewLock)
            {
                if (!_viewRanges.TryGetValue(data, out var r)) return;
                if (r.Count > 1) _viewRanges[data] = (r.Bytes, r.Count - 1);
                else
                {
                    _viewRanges.Remove(data);
                    DropPages(data, r.Bytes);
                }
                if (--_liveViews == 0) _alive.Free();
                unmap = _liveViews == 0 && _unmapWhenViewsFreed;
                if (unmap) _unmapWhenViewsFreed = false;
            }
            if (unmap) Unmap();
        }
        catch (Exception)
        {
            // A deleter must not throw into native code; the worst case is pages left resident or a mapping left open.
        }
    }

    /// <summary>
    /// Maps the pages of [data, data + bytes) into this process in one call (Linux 5.14's MADV_POPULATE_READ) instead of one
    /// page fault per few pages as the reader touches them: a merge reads every byte of every view once, so the faults are
    /// pure overhead. Best effort: where the kernel lacks it (EINVAL) it is not tried again, and a view works either way.
    /// </summary>
    static void PopulatePages(nint data, long bytes)
    {
        if (!OperatingSystem.IsLinux() || _populateUnavailable || bytes < 1 << 20) return;
        var page = Environment.SystemPageSize;
        var start = data / page * page;
        var end = (data + (nint)bytes + page - 1) / page * page;
        if (MAdvise(start, (nuint)(end - start), MadvPopulateRead) != 0 && Marshal.GetLastPInvokeError() == EInval) _populateUnavailable = true;
    }

    /// <summary>Drops the whole pages inside [data, data + bytes) from the resident set (they stay in the page cache).</summary>
    static void DropPages(nint data, long bytes)
    {
        if (!OperatingSystem.IsLinux()) return;
        var page = Environment.SystemPageSize;
        var start = (data + page - 1) / page * page;
        var end = (data + (nint)bytes) / page * page;
        if (end > start) MAdvise(start, (nuint)(end - start), MadvDontNeed);
    }
}
