using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Research.Stages.Merge;

/// <summary>
/// Keeps the entries of a task vector by their magnitude rank (TIES' trim, breadcrumbs' window) without sorting: the
/// thresholds are found by selection over one float copy of the magnitudes, then one pass writes the result. Rank 0 is
/// the largest magnitude; equal magnitudes are ranked by position (the earlier entry first), so exactly the asked number
/// of entries is kept and the result does not depend on a sort's tie order. Memory: the result and one copy of the
/// magnitudes, where an argsort holds int64 indices and sort buffers (several times the tensor: the streaming merge's peak).
/// </summary>
public static unsafe class MagnitudeRanks
{
    /// <summary>
    /// A new float32 tensor shaped like <paramref name="tau"/> holding the entries whose magnitude rank is in
    /// [<paramref name="from"/>, <paramref name="from"/> + <paramref name="count"/>), zeros elsewhere.
    /// </summary>
    public static Tensor KeepWindow(Tensor tau, long from, long count)
    {
        var n = tau.numel();
        ArgumentOutOfRangeException.ThrowIfNegative(from);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (from + count > n) throw new ArgumentOutOfRangeException(nameof(count), $"rank window [{from}, {from + count}) exceeds the {n} entries");
        if (n > int.MaxValue / sizeof(float)) throw new ArgumentException($"a tensor of {n} entries is too large for rank selection (at most {int.MaxValue / sizeof(float)})");
        using var x = tau.to_type(ScalarType.Float32).contiguous();
        var result = zeros_like(x);
        if (count == 0) return result;
        try
        {
            var xs = MemoryMarshal.Cast<byte, float>(x.bytes);
            var rs = MemoryMarshal.Cast<byte, float>(result.bytes);
            // The selection's scratch is native memory freed on return: a managed array of the tensor's size would stay in
            // the large-object heap until a full collection.
            var scratch = new Span<float>(NativeMemory.Alloc((nuint)xs.Length, sizeof(float)), xs.Length);
            Cut upper, lower;
            try
            {
                upper = Cut.Of(xs, from, scratch);                 // the `from` largest: excluded
                lower = Cut.Of(xs, from + count, scratch);         // the `from + count` largest: included unless in `upper`
            }
            finally
            {
                fixed (float* p = scratch) NativeMemory.Free(p);
            }
            for (var i = 0; i < xs.Length; i++)
            {
                var a = MathF.Abs(xs[i]);
                // Both cuts see every entry (each spends its tie budget in order of position).
                var inLower = lower.Takes(a);
                var inUpper = upper.Takes(a);
                if (inLower && !inUpper) rs[i] = xs[i];
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The set of the r largest magnitudes as a threshold and a tie budget: an entry belongs when its magnitude is above the
    /// threshold, or equal to it while fewer than <see cref="_ties"/> equal ones were taken before it (so a cut must see
    /// the entries in order, once).
    /// </summary>
    sealed class Cut
    {
        readonly float _threshold;
        readonly bool _all, _none;
        long _ties;

        Cut(float threshold, long ties, bool all, bool none) { _threshold = threshold; _ties = ties; _all = all; _none = none; }

        public static Cut Of(ReadOnlySpan<float> xs, long r, Span<float> scratch)
        {
            if (r <= 0) return new Cut(0, 0, all: false, none: true);
            if (r >= xs.Length) return new Cut(0, 0, all: true, none: false);
            for (var i = 0; i < xs.Length; i++) scratch[i] = MathF.Abs(xs[i]);
            var threshold = Select(scratch, (int)(xs.Length - r));             // the r-th largest = the (n - r)-th smallest, 0-based
            long above = 0;
            foreach (var v in xs) if (MathF.Abs(v) > threshold) above++;
            return new Cut(threshold, r - above, all: false, none: false);
        }

        public bool Takes(float magnitude)
        {
            if (_all) return true;
            if (_none) return false;
            if (magnitude > _threshold) return true;
            if (magnitude == _threshold && _ties > 0) { _ties--; return true; }
            return false;
        }
    }

    /// <summary>The k-th smallest value (0-based) of <paramref name="a"/>, which is reordered (Hoare's selection, middle pivot
    /// of three; NaN magnitudes are not expected: task vectors are finite).</summary>
    static float Select(Span<float> a, int k)
    {
        int lo = 0, hi = a.Length - 1;
        while (hi > lo)
        {
            var mid = lo + (hi - lo) / 2;
            if (a[mid] < a[lo]) (a[mid], a[lo]) = (a[lo], a[mid]);
            if (a[hi] < a[lo]) (a[hi], a[lo]) = (a[lo], a[hi]);
            if (a[hi] < a[mid]) (a[hi], a[mid]) = (a[mid], a[hi]);
            var pivot = a[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return a[k];
        }
        return a[k];
    }
}
