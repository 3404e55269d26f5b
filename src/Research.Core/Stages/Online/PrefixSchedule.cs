namespace Research.Stages.Online;

/// <summary>How the share of the demonstration given as a prefix moves from the first step to the last.</summary>
public enum PrefixShape
{
    Linear,
    /// <summary>Half a cosine from <see cref="PrefixSchedule.From"/> to <see cref="PrefixSchedule.To"/> (UFT's hint schedule).</summary>
    Cosine,
}

/// <summary>
/// Prefix sampling (Prefix-RFT, arXiv:2507.01679; UFT, arXiv:2505.16984): each rollout continues the first
/// <see cref="Fraction"/> of its prompt's demonstration, so early training sees mostly the expert's path and later
/// training its own. Only the sampled continuation is trained; the reward scores prefix + continuation.
/// From = To = 0 (the default) is plain GRPO.
/// </summary>
public sealed record PrefixSchedule
{
    /// <summary>Share of the demonstration's tokens at the first batch of rollouts, in [0, 1].</summary>
    public double From { get; init; }
    /// <summary>Share at the last batch of rollouts, in [0, 1].</summary>
    public double To { get; init; }
    public PrefixShape Shape { get; init; } = PrefixShape.Cosine;

    public bool Enabled => From > 0 || To > 0;

    public void Validate()
    {
        if (!(From is >= 0 and <= 1) || !(To is >= 0 and <= 1))
            throw new ArgumentException($"grpo: prefix shares must be in [0, 1] (got from {From}, to {To})");
    }

    /// <summary>The share at rollout batch <paramref name="generation"/> of <paramref name="generations"/> (0-based).</summary>
    public double Fraction(long generation, long generations)
    {
        var t = generations <= 1 ? 0.0 : Math.Clamp(generation / (double)(generations - 1), 0, 1);
        var w = Shape == PrefixShape.Cosine ? 0.5 * (1 + Math.Cos(Math.PI * t)) : 1 - t;    // 1 at the start, 0 at the end
        return To + (From - To) * w;
    }

    /// <summary>How many of a demonstration's <paramref name="tokens"/> tokens go before the rollout: the share, rounded down.</summary>
    public int Tokens(int tokens, long generation, long generations) => (int)Math.Floor(Fraction(generation, generations) * tokens + 1e-9);
}
