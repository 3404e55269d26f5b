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
public sealed class Mixture : IMixture
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

    /// <summary>Source of position <paramref name="globalIndex"/> and how many draws from that source precede it.</summary>
    internal (int Source, long Draw) Slot(long globalIndex)
    {
        var cycle = Math.DivRem(globalIndex, Period, out var offset);
        var s = _pattern[offset];
        return (s, cycle * _quota[s] + _rank[offset]);
    }

    /// <summary>How many of the first <paramref name="length"/> positions go to <paramref name="source"/>.</summary>
    internal long CountBefore(int source, long length)
    {
        var cycle = Math.DivRem(length, Period, out var offset);
        var count = cycle * _quota[source];
        for (var i = 0; i < offset; i++)
            if (_pattern[i] == source) count++;
        return count;
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

/// <summary>What the language-modelling objective samples from: sequence j of a run ↦ (source, block), a pure function of j.</summary>
public interface IMixture
{
    IReadOnlyList<MixtureSource> Sources { get; }
    (int Source, int Block) Sample(long globalIndex);
}

/// <summary>From <paramref name="Start"/> (a fraction of the run's steps, in [0, 1)) on, sources are drawn with <paramref name="Weights"/> (normalised; one per source).</summary>
public sealed record MixturePhase(double Start, double[] Weights);

/// <summary>
/// A mixture whose weights are a pure function of the step: phases by start fraction, held constant
/// (<paramref name="Linear"/> = false) or interpolated linearly to the next phase's weights in <paramref name="Segments"/>
/// constant pieces (each with the interpolated weights at its middle).
/// </summary>
public sealed record MixtureSchedule(MixturePhase[] Phases, bool Linear = false, int Segments = 10)
{
    /// <summary>One phase: the same weights all along.</summary>
    public static MixtureSchedule Constant(double[] weights) => new([new MixturePhase(0, weights)]);

    /// <summary>"Does your data spark joy?": <paramref name="weights"/>, then over the last <paramref name="lastFraction"/> of steps
    /// source <paramref name="source"/>'s weight multiplied by <paramref name="factor"/> (renormalised).</summary>
    public static MixtureSchedule Upsample(double[] weights, int source, double lastFraction, double factor)
    {
        if (!(lastFraction > 0 && lastFraction < 1)) throw new ArgumentOutOfRangeException(nameof(lastFraction), lastFraction, "upsampling needs a last fraction of steps in (0, 1)");
        if (!(factor >= 0) || !double.IsFinite(factor)) throw new ArgumentOutOfRangeException(nameof(factor), factor, "upsampling factor must be finite and ≥ 0");
        if (source < 0 || source >= weights.Length) throw new ArgumentOutOfRangeException(nameof(source), source, $"no source {source} among {weights.Length}");
        var late = weights.ToArray();
        late[source] *= factor;
        return new([new MixturePhase(0, weights), new MixturePhase(1 - lastFraction, late)]);
    }

    /// <summary>The constant pieces this schedule is run as: (first step, normalised weights), for a run of <paramref name="steps"/> steps.</summary>
    public IReadOnlyList<(long Step, double[] Weights)> Pieces(long steps)
    {
        if (Phases.Length == 0) throw new ArgumentException("a mixture schedule needs at least one phase");
        if (Phases[0].Start != 0) throw new ArgumentException($"a mixture schedule's first phase must start at 0 (starts at {Phases[0].Start})");
        for (var i = 0; i < Phases.Length; i++)
        {
            var p = Phases[i];
            if (!(p.Start >= 0 && p.Start < 1)) throw new ArgumentException($"mixture phase {i}: start {p.Start} must be in [0, 1) (a fraction of the steps)");
            if (i > 0 && !(p.Start > Phases[i - 1].Start)) throw new ArgumentException($"mixture phase {i}: starts ({p.Start}) must increase");
            if (p.Weights.Length != Phases[0].Weights.Length) throw new ArgumentException($"mixture phase {i}: {p.Weights.Length} weights, phase 0 has {Phases[0].Weights.Length}");
            if (p.Weights.Any(w => !double.IsFinite(w) || w < 0) || !(p.Weights.Sum() > 0))
                throw new ArgumentException($"mixture phase {i}: weights [{string.Join(", ", p.Weights)}] must be finite, ≥ 0 and not all 0");
        }
        if (Segments < 1) throw new ArgumentException($"mixture schedule: segments must be ≥ 1 (got {Segments})");
        static double[] Norm(double[] w) { var s = w.Sum(); return w.Select(x => x / s).ToArray(); }
        long StepOf(double f) => (long)Math.Round(f * steps);
        var pieces = new List<(long, double[])>();
        for (var i = 0; i < Phases.Length; i++)
        {
            var (a, w0) = (Phases[i].Start, Norm(Phases[i].Weights));
            if (!Linear || i == Phases.Length - 1) { pieces.Add((StepOf(a), w0)); continue; }
            var (b, w1) = (Phases[i + 1].Start, Norm(Phases[i + 1].Weights));
            for (var k = 0; k < Segments; k++)
            {
                var t = (k + 0.5) / Segments;
                pieces.Add((StepOf(a + (b - a) * k / Segments), w0.Zip(w1, (x, y) => x + (y - x) * t).ToArray()));
            }
        }
        // Pieces that round to the same first step: the later one wins.
        return pieces.GroupBy(p => p.Item1).Select(g => g.Last()).OrderBy(p => p.Item1).ToArray();
    }

    public override string ToString() =>
        string.Join(";", Phases.Select(p => $"{p.Start:R}:[{string.Join(",", p.Weights.Select(w => w.ToString("R")))}]")) + (Linear ? $"|linear{Segments}" : "");
}

/// <summary>
/// A mixture following a <see cref="MixtureSchedule"/> over a run of <c>steps</c> optimizer steps of <c>sequencesPerStep</c>
/// sequences. Piece p covers sequences [a_p, a_{p+1}); within it sources are laid out as by a <see cref="Mixture"/> with the
/// piece's weights (exact quotas per period). Blocks continue across pieces: the k-th draw of source s over the whole run is
/// position k mod Count of the seeded permutation of epoch k / Count, as in <see cref="Mixture"/>, so a one-phase schedule
/// samples exactly what <see cref="Mixture"/> does. A pure function of the sequence index.
/// </summary>
public sealed class ScheduledMixture : IMixture
{
    readonly MixtureSource[] _sources;
    readonly long[] _start;        // first sequence of each piece
    readonly Mixture[] _pieces;
    readonly long[][] _before;     // draws of each source before each piece
    readonly double[][] _weights;
    readonly long[] _startStep;
    readonly int _seed;
    readonly (long Epoch, int[] Perm)?[] _perms;

    public ScheduledMixture(IReadOnlyList<TokenBlocks> sources, IReadOnlyList<string> names, MixtureSchedule schedule, long steps, long sequencesPerStep, int seed)
    {
        if (sources.Count != names.Count) throw new ArgumentException($"{sources.Count} sources but {names.Count} names");
        if (schedule.Phases.Length > 0 && schedule.Phases[0].Weights.Length != sources.Count)
            throw new ArgumentException($"mixture schedule has {schedule.Phases[0].Weights.Length} weights per phase but there are {sources.Count} sources ({string.Join(", ", names)})");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequencesPerStep);
        var pieces = schedule.Pieces(steps);
        _seed = seed;
        _startStep = pieces.Select(p => p.Step).ToArray();
        _start = pieces.Select(p => p.Step * sequencesPerStep).ToArray();
        _weights = pieces.Select(p => p.Weights).ToArray();
        _pieces = pieces.Select(p => new Mixture(sources.Select((b, s) => new MixtureSource(names[s], b, p.Weights[s])).ToArray(), seed)).ToArray();
        _sources = _pieces[0].Sources.ToArray();
        _before = new long[_pieces.Length][];
        _before[0] = new long[sources.Count];
        for (var p = 1; p < _pieces.Length; p++)
        {
            var length = _start[p] - _start[p - 1];
            _before[p] = Enumerable.Range(0, sources.Count).Select(s => _before[p - 1][s] + _pieces[p - 1].CountBefore(s, length)).ToArray();
        }
        _perms = new (long, int[])?[sources.Count];
    }

    public IReadOnlyList<MixtureSource> Sources => _sources;

    /// <summary>The normalised weights in force at optimizer step <paramref name="step"/> (0-based).</summary>
    public double[] WeightsAt(long step) => _weights[PieceOfStep(step)];

    int PieceOfStep(long step)
    {
        var i = Array.BinarySearch(_startStep, step);
        return i >= 0 ? i : ~i - 1;
    }

    public (int Source, int Block) Sample(long globalIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(globalIndex);
        var i = Array.BinarySearch(_start, globalIndex);
        var p = i >= 0 ? i : ~i - 1;
        var (s, local) = _pieces[p].Slot(globalIndex - _start[p]);
        var k = _before[p][s] + local;
        var n = _sources[s].Blocks.Count;
        var epoch = Math.DivRem(k, n, out var pos);
        lock (_perms)
        {
            if (_perms[s] is not { } cached || cached.Epoch != epoch)
                _perms[s] = (epoch, new Rng(Rng.Derive(_seed, s, epoch)).Permutation(n));
            return (s, _perms[s]!.Value.Perm[pos]);
        }
    }
}
