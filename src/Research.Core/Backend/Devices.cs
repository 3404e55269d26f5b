using TorchSharp;

namespace Research.Backend;

/// <summary>Device, thread and seed policy: CUDA when available, else CPU; overridable.</summary>
public static class Devices
{
    /// <summary>
    /// "auto" (or null/empty): CUDA when available, else CPU. Otherwise "cpu", "cuda", "cuda:N".
    /// The RESEARCH_DEVICE environment variable overrides "auto".
    /// </summary>
    public static torch.Device Choose(string? requested = null)
    {
        TorchRuntime.EnsureStarted();
        var want = string.IsNullOrWhiteSpace(requested) || requested == "auto"
            ? Environment.GetEnvironmentVariable("RESEARCH_DEVICE")
            : requested;
        if (string.IsNullOrWhiteSpace(want) || want == "auto")
            return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        if (want.StartsWith("cuda", StringComparison.Ordinal) && !torch.cuda.is_available())
            throw new InvalidOperationException(
                $"device '{want}' was asked for but CUDA is not available in this build/machine; " +
                "build with -p:TorchBackend=cuda on a CUDA machine, or use --device cpu");
        return new torch.Device(want);
    }

    /// <summary>Sets torch's intra-op thread count (null or 0: RESEARCH_THREADS, else libtorch's default).</summary>
    public static void SetThreads(int? threads)
    {
        TorchRuntime.EnsureStarted();
        var n = threads is > 0 ? threads.Value
            : int.TryParse(Environment.GetEnvironmentVariable("RESEARCH_THREADS"), out var e) && e > 0 ? e : 0;
        if (n > 0) torch.set_num_threads(n);
    }

    /// <summary>One seed for torch (CPU and CUDA); data order derives its own streams from the same seed.</summary>
    public static void Seed(long seed)
    {
        TorchRuntime.EnsureStarted();
        torch.manual_seed(seed);
        if (torch.cuda.is_available()) torch.cuda.manual_seed_all(seed);
    }
}
