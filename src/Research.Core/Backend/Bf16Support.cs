using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Backend;

/// <summary>
/// Whether a device computes bf16 natively, and why we think so. On a CPU without bf16 instructions libtorch emulates
/// bf16 matmuls (1.1 GFLOP/s against 44 in float32 on a 2-core AVX2 EPYC), so bf16 there is a slowdown, not a speedup.
/// The decision is made from the CPU's flags (deterministic, so the stage keys that depend on it are too); only where
/// there are none to read does a timed probe decide.
/// </summary>
public sealed record Bf16Support(bool Native, string Reason)
{
    /// <summary>x86 flags of native bf16 arithmetic (AVX-512 BF16, AMX BF16); aarch64's "bf16" feature.</summary>
    public static readonly string[] NativeFlags = ["avx512_bf16", "amx_bf16", "bf16"];

    /// <summary>From the CPU's flags; null when there are none to read (then <see cref="FromProbe"/> decides).</summary>
    public static Bf16Support? FromCpu(CpuInfo? cpu)
    {
        if (cpu is null) return null;
        var flag = NativeFlags.FirstOrDefault(cpu.Has);
        return flag is not null
            ? new Bf16Support(true, $"{cpu.Model}: CPU flag {flag}")
            : new Bf16Support(false, $"{cpu.Model}: no native bf16 (none of the CPU flags {string.Join(", ", NativeFlags)})");
    }

    /// <summary>Native when a bf16 matmul is at least as fast as a float32 one.</summary>
    public static Bf16Support FromProbe(Bf16Probe probe) =>
        new(probe.Speedup >= 1.0, $"no CPU flags to read; a bf16 matmul ran at {probe.Speedup:F2}x the float32 rate");

    static readonly Lazy<Bf16Support> Cpu = new(() => FromCpu(CpuInfo.Current) ?? FromProbe(Bf16Probe.Measured));

    /// <summary>The device's support: CUDA counts as native (bf16 tensor cores from Ampere on); a CPU is decided once per process.</summary>
    public static Bf16Support For(Device device) =>
        device.type == DeviceType.CUDA ? new Bf16Support(true, "CUDA device") : Cpu.Value;

    /// <summary>This machine's CPU.</summary>
    public static Bf16Support ThisCpu => Cpu.Value;
}

/// <summary>A short timed probe: float32 and bf16 matmuls of 256 x 256 matrices on the CPU, each for about <c>budget</c> / 2.</summary>
public sealed record Bf16Probe(double Float32FlopsPerS, double BFloat16FlopsPerS)
{
    /// <summary>bf16 rate / float32 rate (below 1: bf16 is slower).</summary>
    public double Speedup => BFloat16FlopsPerS / Float32FlopsPerS;

    /// <summary>float32 rate / bf16 rate (how many times slower bf16 is).</summary>
    public double Slowdown => Float32FlopsPerS / BFloat16FlopsPerS;

    static readonly Lazy<Bf16Probe> Once = new(() => Measure(TimeSpan.FromSeconds(0.4)));

    /// <summary>Measured once per process (about 0.4 s, however slow bf16 is: one product of 33 MFLOP at the least).</summary>
    public static Bf16Probe Measured => Once.Value;

    public static Bf16Probe Measure(TimeSpan budget)
    {
        TorchRuntime.EnsureStarted();
        const int n = 256;
        double Rate(ScalarType dtype)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(1);
            var a = randn([n, n], generator: generator).to(dtype);
            var b = randn([n, n], generator: generator).to(dtype);
            using (matmul(a, b)) { }                                    // warm-up
            var clock = Stopwatch.StartNew();
            var products = 0;
            do
            {
                using (matmul(a, b)) { }
                products++;
            } while (clock.Elapsed < budget / 2 && products < 1000);
            return products * 2.0 * n * n * n / clock.Elapsed.TotalSeconds;
        }
        return new Bf16Probe(Rate(float32), Rate(bfloat16));
    }
}
