namespace Research.Data;

/// <summary>One source of a <see cref="Mixture"/>: its blocks and the share of sampled blocks it gets.</summary>
public sealed record MixtureSource(string Name, TokenBlocks Blocks, double Fraction);

/// <summary>
/// Deterministic, resumable sampling of blocks from several sources. <see cref="Sample"/> is a pure function of
/// (sources, seed, globalIndex): resuming at data position i needs no saved state, and query order does not matter.
/// <para>
/// Which source: the fractions are turned into integer quotas q_s over a period P (the smallest P ≤ 65536 for
/// which every fraction × P is an integer, else P = 65536 with largest-remainder rounding). One period is laid
/// out by the largest-deficit rule — item j goes to the source maximising q_s·(j+1) − P·count_s so far, ties to the
/// lower index — and repeats. So every whole period holds exactly q_s items of source s, and any prefix is within
/// about one item of fraction × length. A source with fraction 0 is never sampled. The layout does not depend on the seed.
/// </para>
/// <para>
/// Which block: the k-th draw from source s is position k mod Count of a permutation of that source's blocks
/// seeded by (seed, s, epoch = k / Count), so every block is visited once per epoch, in a new order each epoch.
/// </para>
/// </summary>
public sealed class Mixture
{
    public const int MaxPeriod = 1 << 16;

    readonly MixtureSource[] _sources;
    readonly long[] _quota;     // items of each source per period
    readonly int[] _pattern;    // source of each position in the period
    readonly int[] _rank;       // how many earlier positions in the period have the same source
    readonly int _seed;
    readonly (long Epoch, int[] Perm)?[] _perms; // last permutation used per source (a cache; results stay pure)

    public Mixture(IReadOnlyList<MixtureSource> sources, int seed)
    {
        ArgumentNullException.ThrowIfNull(sources);
        if (sources.Count == 0) throw new ArgumentException("a mixture needs at least one source", nameof(sources));
        _sources = sources.ToArray();
        _seed = seed;
        double sum = 0;
        foreach (var s in _sources)
        {
            ArgumentNullException.ThrowIfNull(s, nameof(sources));
            if (!double.IsFinite(s.Fraction) || s.Fraction < 0)
                throw new ArgumentException($"mixture source \"{s.Name}\": fraction {s.Fraction} must be a finite number ≥ 0", nameof(sources));
            if (s.Fraction > 0 && s.Blocks.Count == 0)
                throw new ArgumentException($"mixture source \"{s.Name}\" has fraction {s.Fraction} but no blocks", nameof(sources));
            sum += s.Fraction;
        }
        if (Math.Abs(sum - 1) > 1e-9)
            throw new ArgumentException(
                $"mixture fractions must sum to 1 but sum to {sum:R} ({string.Join(", ", _sources.Select(s => $"{s.Name}={s.Fraction:R}"))})", nameof(sources));

        _quota = Quotas(_sources.Select(s => s.Fraction).ToArray(), out var period);
        Period = period;
        _pattern = new int[period];
        _rank = new int[period];
        var count = new long[_sources.Length];
        for (var j = 0; j < period; j++)
        {
            var best = -1;
            long bestDeficit = long.MinValue;
            for (var s = 0; s < _sources.Length; s++)
            {
                var deficit = _quota[s] * (j + 1) - period * count[s];
                if (deficit > bestDeficit) { best = s; bestDeficit = deficit; }
            }
            _pattern[j] = best;
            _rank[j] = (int)count[best]++;
        }
        _perms = new (long, int[])?[_sources.Length];
    }

    public IReadOnlyList<MixtureSource> Sources => _sources;
    public int Seed => _seed;

    /// <summary>Length of the repeating source layout; every period holds exactly <see cref="Quota"/>(s) items of source s.</summary>
    public int Period { get; }

    public long Quota(int source) => _quota[source];

    /// <summary>
    /// Replay mixture: <paramref name="replay"/> of the blocks come from <paramref name="general"/> (0.1 = one block in ten),
    /// the rest from <paramref name="domain"/>. Source 0 is the domain, source 1 the general data.
    /// </summary>
    public static Mixture Replay(TokenBlocks domain, TokenBlocks general, double replay, int seed)
    {
        ArgumentNullException.ThrowIfNull(domain);
        ArgumentNullException.ThrowIfNull(general);
        if (!(replay >= 0 && replay <= 1))
            throw new ArgumentOutOfRangeException(nameof(replay), replay, "replay share must be in [0, 1]");
        return new Mixture([new MixtureSource(domain.Name, domain, 1 - replay), new MixtureSource(general.Name, general, replay)], seed);
    }

    /// <summary>The source and block of the <paramref name="globalIndex"/>-th sampled block (0-based).</summary>
    public (int Source, int Block) Sample(long globalIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(globalIndex);
        var cycle = Math.DivRem(globalIndex, Period, out var offset);
        var s = _pattern[offset];
        var k = cycle * _quota[s] + _rank[offset]; // draws from source s before this one
        var n = _sources[s].Blocks.Count;
        var epoch = Math.DivRem(k, n, out var pos);
        return (s, Permutation(s, epoch)[pos]);
    }

    /// <summary>The tokens (BlockLength + 1) of the <paramref name="globalIndex"/>-th sampled block.</summary>
    public ReadOnlySpan<int> BlockAt(long globalIndex)
    {
        var (s, b) = Sample(globalIndex);
        return _sources[s].Blocks.Block(b);
    }

    int[] Permutation(int source, long epoch)
    {
        lock (_perms)
        {
            if (_perms[source] is { } cached && cached.Epoch == epoch) return cached.Perm;
            var perm = new Rng(Rng.Derive(_seed, source, epoch)).Permutation(_sources[source].Blocks.Count);
            _perms[source] = (epoch, perm);
            return perm;
        }
    }

    static long[] Quotas(double[] fractions, out int period)
    {
        const double tolerance = 1e-7;
        for (var p = 1; p <= MaxPeriod; p++)
        {
            var exact = true;
            long total = 0;
            foreach (var f in fractions)
            {
                var x = f * p;
                var r = Math.Round(x);
                if (Math.Abs(x - r) > tolerance) { exact = false; break; }
                total += (long)r;
            }
            if (exact && total == p)
            {
                period = p;
                return fractions.Select(f => (long)Math.Round(f * p)).ToArray();
            }
        }
        // Largest remainder: floors, then one more to the largest remainders (ties to the lower index).
        period = MaxPeriod;
        var quota = fractions.Select(f => (long)Math.Floor(f * MaxPeriod)).ToArray();
        var left = MaxPeriod - quota.Sum();
        var order = Enumerable.Range(0, fractions.Length)
            .Where(i => fractions[i] > 0)
            .OrderByDescending(i => fractions[i] * MaxPeriod - quota[i])
            .ThenBy(i => i)
            .ToArray();
        for (var i = 0; left > 0; i = (i + 1) % order.Length, left--) quota[order[i]]++;
        return quota;
    }
}
