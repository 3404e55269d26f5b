using Research.Backend;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>The precision a run asked for, the one it trains in, and, when they differ or bf16 was forced, the one line that says so.</summary>
public sealed record PrecisionChoice(Precision Requested, Precision Used, string? Note)
{
    public bool FellBack => Requested != Used;
}

/// <summary>
/// bf16 where it helps: a config asking for <see cref="Precision.BFloat16"/> on a device without native bf16 trains in
/// float32 instead (bf16 emulated in software is many times slower there), unless <see cref="TrainConfig.ForceBf16"/>.
/// The decision depends only on the config and the device's <see cref="Bf16Support"/>, which for a CPU comes from its
/// flags, so the stage key that hashes the effective config (<see cref="Effective(TrainConfig, Bf16Support)"/>) is
/// deterministic on a machine.
/// </summary>
public static class PrecisionPolicy
{
    /// <summary>The decision, pure: <paramref name="slowdown"/> (float32 rate / bf16 rate, measured) only words the note.</summary>
    public static PrecisionChoice Decide(TrainConfig config, Bf16Support support, Func<double>? slowdown = null)
    {
        if (config.Precision != Precision.BFloat16 || support.Native) return new PrecisionChoice(config.Precision, config.Precision, null);
        string Slower() => slowdown is null ? "" : $"; a bf16 matmul runs {slowdown():F1}x slower than float32 here";
        return config.ForceBf16
            ? new PrecisionChoice(Precision.BFloat16, Precision.BFloat16, $"bf16 forced without native bf16 ({support.Reason}{Slower()})")
            : new PrecisionChoice(Precision.BFloat16, Precision.Float32,
                $"bf16 asked for, but {support.Reason}{Slower()}: training in float32 (TrainConfig.ForceBf16 / Stage.forceBf16 trains in bf16 anyway)");
    }

    /// <summary>The decision for a device, with the slowdown measured (once per process) when a note needs it.</summary>
    public static PrecisionChoice Decide(TrainConfig config, Device device) =>
        Decide(config, Bf16Support.For(device), () => Bf16Probe.Measured.Slowdown);

    /// <summary>
    /// The config as it trains: the precision decided, <see cref="TrainConfig.ForceBf16"/> cleared (it has done its work: the
    /// precision says what is computed). Equal to <paramref name="config"/> unless bf16 was asked for.
    /// </summary>
    public static TrainConfig Effective(TrainConfig config, Bf16Support support) =>
        config.Precision != Precision.BFloat16 && !config.ForceBf16 ? config
            : config with { Precision = Decide(config, support).Used, ForceBf16 = false };
}
