using System.Runtime.InteropServices;

namespace Research.Backend;

/// <summary>
/// The C allocator's policy for libtorch's CPU tensors (glibc malloc; elsewhere every call is a no-op).
/// By default glibc gives large freed blocks back to the kernel (blocks over its mmap threshold are unmapped,
/// a heap's free top over its trim threshold is trimmed), so every training step faults its activations in
/// again: at d_model 512 about 20,000 page faults (80 MB zeroed) per step, 7% of the step on this machine.
/// <see cref="Retain"/> keeps freed memory in the process, as PyTorch's CUDA caching allocator does on a GPU;
/// <see cref="ReturnFreePages"/> hands it back where a bound on resident memory matters (the streaming merge).
/// Set <c>RESEARCH_MALLOC=system</c> to keep glibc's defaults.
/// </summary>
public static class NativeAllocator
{
    const int TrimThreshold = -1, TopPad = -2, MmapThreshold = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int MallOpt(int param, int value);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);

    static bool _unavailable = !OperatingSystem.IsLinux();
    static bool _retaining;
    static int _eagerDepth;
    static readonly object Gate = new();

    /// <summary>What <see cref="Retain"/> did, for diagnostics.</summary>
    public static string Report { get; private set; } = "glibc defaults";

    /// <summary>
    /// Blocks up to 256 MB come from the heap instead of fresh mappings, a heap keeps up to 1 GB of free top,
    /// and grows by 64 MB at a time: freed activations are reused without page faults. Idempotent.
    /// </summary>
    public static void Retain()
    {
        if (_unavailable) return;
        if (string.Equals(Environment.GetEnvironmentVariable("RESEARCH_MALLOC"), "system", StringComparison.OrdinalIgnoreCase))
        {
            Report = "glibc defaults (RESEARCH_MALLOC=system)";
            return;
        }
        Native(() =>
        {
            lock (Gate)
            {
                _retaining = SetRetaining();
                Report = _retaining ? "retain freed memory (mmap threshold 256 MB, trim threshold 1 GB, top pad 64 MB)" : "mallopt refused a setting; glibc defaults";
            }
        });
    }

    static bool SetRetaining() =>
        MallOpt(MmapThreshold, 256 << 20) == 1 & MallOpt(TrimThreshold, 1 << 30) == 1 & MallOpt(TopPad, 64 << 20) == 1;

    /// <summary>
    /// Until disposed, every block of 128 KiB or more is its own mapping, unmapped when freed, and a heap's free top
    /// over 128 KiB is trimmed (glibc's static defaults): memory goes back to the kernel as soon as it is freed, which a
    /// streaming merge's bound on resident memory needs. Restores <see cref="Retain"/>'s policy afterwards if it was on.
    /// </summary>
    public static IDisposable ReturnEagerly()
    {
        if (_unavailable) return new Eager(false);
        lock (Gate)
        {
            if (_eagerDepth++ == 0 && _retaining)
                Native(() => { MallOpt(MmapThreshold, 128 << 10); MallOpt(TrimThreshold, 128 << 10); MallOpt(TopPad, 0); });
        }
        return new Eager(true);
    }

    sealed class Eager(bool active) : IDisposable
    {
        bool _active = active;

        public void Dispose()
        {
            if (!_active) return;
            _active = false;
            lock (Gate)
                if (--_eagerDepth == 0 && _retaining && !_unavailable) SetRetaining();
        }
    }

    /// <summary>Returns the allocator's free pages to the kernel (malloc_trim).</summary>
    public static void ReturnFreePages() => Native(() => MallocTrim(0));

    /// <summary>Calls into libc unless it is known to be missing; a missing library or entry point turns every later call off.</summary>
    static void Native(Action call)
    {
        if (_unavailable) return;
        try { call(); }
        catch (DllNotFoundException) { _unavailable = true; }
        catch (EntryPointNotFoundException) { _unavailable = true; }
    }
}
