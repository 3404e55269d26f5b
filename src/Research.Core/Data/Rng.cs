namespace Research.Data;

/// <summary>
/// SplitMix64: a small deterministic generator whose output is fixed by this code (unlike System.Random),
/// so seeded splits and data orders stay the same across .NET versions.
/// </summary>
public sealed class Rng
{
    ulong _state;

    public Rng(ulong seed) => _state = seed;
    public Rng(long seed) : this(unchecked((ulong)seed)) { }

    public ulong NextUInt64()
    {
        _state = unchecked(_state + 0x9E3779B97F4A7C15UL);
        return Finalize(_state);
    }

    /// <summary>Uniform in [0, n), unbiased (rejection sampling).</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        var bound = (ulong)n;
        var limit = ulong.MaxValue - ulong.MaxValue % bound; // values >= limit would bias the result
        ulong x;
        do x = NextUInt64(); while (x >= limit);
        return (int)(x % bound);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(T[] items)
    {
        for (var i = items.Length - 1; i > 0; i--)
        {
            var j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A permutation of 0..n-1.</summary>
    public int[] Permutation(int n)
    {
        var p = new int[n];
        for (var i = 0; i < n; i++) p[i] = i;
        Shuffle(p);
        return p;
    }

    /// <summary>Mixes several values into one seed (order matters); for seeds like (seed, source, epoch).</summary>
    public static ulong Derive(long seed, params ReadOnlySpan<long> parts)
    {
        var h = Finalize(unchecked((ulong)seed + 0x9E3779B97F4A7C15UL));
        foreach (var p in parts)
            h = Finalize(unchecked(h ^ Finalize((ulong)p + 0xD1B54A32D192ED03UL) + 0x9E3779B97F4A7C15UL));
        return h;
    }

    static ulong Finalize(ulong z)
    {
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}
