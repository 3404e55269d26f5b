using System.Text.Json.Serialization;

namespace Research.Models;

/// <summary>
/// config.json's rope_scaling: how RoPE's inverse frequencies are stretched for longer contexts, as Hugging Face's
/// modeling_rope_utils computes them. "linear" divides every frequency by factor; "dynamic" (NTK-aware) raises the base
/// once a sequence outgrows max_position_embeddings; "llama3" divides low frequencies by factor, keeps high ones and
/// blends between; "yarn" blends interpolated and extrapolated frequencies by a ramp over dimensions and scales cos/sin
/// by an attention factor.
/// </summary>
public sealed record RopeScaling
{
    [JsonPropertyName("rope_type")] public string? RopeType { get; init; }
    /// <summary>The older key for <see cref="RopeType"/>.</summary>
    [JsonPropertyName("type")] public string? LegacyType { get; init; }
    [JsonPropertyName("factor")] public double? Factor { get; init; }
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }
    [JsonPropertyName("beta_fast")] public double? BetaFast { get; init; }
    [JsonPropertyName("beta_slow")] public double? BetaSlow { get; init; }
    [JsonPropertyName("mscale")] public double? Mscale { get; init; }
    [JsonPropertyName("mscale_all_dim")] public double? MscaleAllDim { get; init; }
    [JsonPropertyName("attention_factor")] public double? AttentionFactor { get; init; }
    [JsonPropertyName("truncate")] public bool? Truncate { get; init; }

    [JsonIgnore] public string Type => RopeType ?? LegacyType ?? "default";

    public static IReadOnlyList<string> Supported { get; } = ["default", "linear", "dynamic", "llama3", "yarn"];

    public RopeScaling Validate(string where)
    {
        if (!Supported.Contains(Type))
            throw new InvalidDataException($"{where}: rope type '{Type}' is not supported (supported: {string.Join(", ", Supported)})");
        if (Type != "default" && Factor is not > 0)
            throw new InvalidDataException($"{where}: {Type} scaling needs a positive factor");
        if (Type == "llama3" && (LowFreqFactor is null || HighFreqFactor is null || OriginalMaxPositionEmbeddings is null))
            throw new InvalidDataException($"{where}: llama3 scaling needs low_freq_factor, high_freq_factor and original_max_position_embeddings");
        if (Type == "llama3" && !(HighFreqFactor > LowFreqFactor))
            throw new InvalidDataException($"{where}: llama3 scaling needs high_freq_factor > low_freq_factor");
        return this;
    }
}

/// <summary>RoPE's inverse frequencies and the cos/sin scale for one layer kind, computed in double on the host.</summary>
public sealed record RopeSpec(double Theta, int Dim, RopeScaling? Scaling, int MaxPositionEmbeddings)
{
    /// <summary>Whether the frequencies depend on the sequence length (dynamic NTK).</summary>
    public bool Dynamic => Scaling?.Type == "dynamic";

    /// <summary>inv_freq (Dim / 2 entries) for sequences of <paramref name="seqLen"/> positions, and the factor cos and sin are multiplied by.</summary>
    public (double[] InvFreq, double AttentionFactor) Compute(int seqLen)
    {
        var half = Dim / 2;
        double[] Default(double b) => Enumerable.Range(0, half).Select(i => 1.0 / Math.Pow(b, 2.0 * i / Dim)).ToArray();
        var s = Scaling;
        switch (s?.Type ?? "default")
        {
            case "linear":
                return (Default(Theta).Select(f => f / s!.Factor!.Value).ToArray(), 1.0);
            case "dynamic":
            {
                var factor = s!.Factor!.Value;
                var len = Math.Max(seqLen, MaxPositionEmbeddings);
                var b = Theta * Math.Pow(factor * len / MaxPositionEmbeddings - (factor - 1), Dim / (Dim - 2.0));
                return (Default(b), 1.0);
            }
            case "llama3":
            {
                var factor = s!.Factor!.Value;
                var old = (double)s.OriginalMaxPositionEmbeddings!.Value;
                var (lo, hi) = (s.LowFreqFactor!.Value, s.HighFreqFactor!.Value);
                var lowWavelen = old / lo;
                var highWavelen = old / hi;
                return (Default(Theta).Select(f =>
                {
                    var wavelen = 2 * Math.PI / f;
                    if (wavelen < highWavelen) return f;
                    if (wavelen > lowWavelen) return f / factor;
                    var smooth = (old / wavelen - lo) / (hi - lo);
                    return (1 - smooth) * f / factor + smooth * f;
                }).ToArray(), 1.0);
            }
            case "yarn":
                return Yarn(s!);
            default:
                return (Default(Theta), 1.0);
        }
    }

    (double[], double) Yarn(RopeScaling s)
    {
        var factor = s.Factor!.Value;
        var original = s.OriginalMaxPositionEmbeddings ?? MaxPositionEmbeddings;
        static double MscaleOf(double scale, double m = 1) => scale <= 1 ? 1.0 : 0.1 * m * Math.Log(scale) + 1.0;
        var attention = s.AttentionFactor ?? (s.Mscale is { } ms && ms != 0 && s.MscaleAllDim is { } ma && ma != 0
            ? MscaleOf(factor, ms) / MscaleOf(factor, ma)
            : MscaleOf(factor));
        var betaFast = s.BetaFast is { } bf && bf != 0 ? bf : 32;
        var betaSlow = s.BetaSlow is { } bs && bs != 0 ? bs : 1;
        double CorrectionDim(double rotations) => Dim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(Theta));
        double low = CorrectionDim(betaFast), high = CorrectionDim(betaSlow);
        if (s.Truncate ?? true) { low = Math.Floor(low); high = Math.Ceiling(high); }
        low = Math.Max(low, 0);
        high = Math.Min(high, Dim - 1);
        if (low == high) high += 0.001;
        var half = Dim / 2;
        var inv = new double[half];
        for (var i = 0; i < half; i++)
        {
            var posFreq = Math.Pow(Theta, 2.0 * i / Dim);
            var extrapolation = 1.0 / posFreq;
            var interpolation = 1.0 / (factor * posFreq);
            // HF computes the ramp in float32: (i - low) / (high - low) clamped to [0, 1].
            var ramp = Math.Clamp((float)((i - low) / (high - low)), 0f, 1f);
            var extrapolationFactor = 1 - ramp;
            inv[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return (inv, attention);
    }
}
