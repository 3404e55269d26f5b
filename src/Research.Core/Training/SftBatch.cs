using Research.Data;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// A supervised batch. Rows hold one example, or several when packing; targets are -100 wherever the token is not
/// trained (prompt, user turns, padding, a row's sample boundaries). <see cref="Normalizer"/> = trained targets.
/// </summary>
public sealed record SftBatch(
    Tensor Input,        // (B, T) int64
    Tensor Target,       // (B, T) int64, -100 = not scored
    Tensor? Positions,   // (B, T) int64, restarting at 0 for every packed sample; null = 0..T-1
    Tensor? Mask,        // (B, 1, T, T) bool, causal and block-diagonal over packed samples; null = causal
    Tensor InvSqrtLength,// (B, T, 1) float32: 1/sqrt(length of the token's own sample), for NEFTune
    long Step, int Micro, long Normalizer, long Tokens) : IBatch
{
    public void Dispose()
    {
        Input.Dispose(); Target.Dispose(); Positions?.Dispose(); Mask?.Dispose(); InvSqrtLength.Dispose();
    }

    /// <summary>
    /// Stacks rows of examples into a batch padded to the longest row. Each example of n tokens fills n - 1 positions
    /// (inputs ids[0..n-2], targets ids[1..n-1], a target scored only where the token is trained).
    /// <paramref name="packed"/>: per-sample position ids and a block-diagonal causal mask, so no token attends
    /// across samples and a packed sample computes what it would alone.
    /// </summary>
    public static SftBatch Collate(IReadOnlyList<IReadOnlyList<SftTokens>> rows, bool packed, long step, int micro, Device device, int padId = 0)
    {
        var b = rows.Count;
        var t = rows.Max(r => r.Sum(s => s.Length - 1));
        var input = new long[b * t];
        var target = new long[b * t];
        var pos = new long[b * t];
        var seg = new long[b * t];
        var inv = new float[b * t];
        long normalizer = 0, tokens = 0;
        Array.Fill(input, padId);
        Array.Fill(target, TokenLoss.IgnoreIndex);
        Array.Fill(inv, 1f);
        for (int r = 0; r < b; r++)
        {
            var o = r * t;
            var k = 0;
            foreach (var s in rows[r])
            {
                var n = s.Length - 1;
                k++;
                for (int j = 0; j < n; j++, o++)
                {
                    input[o] = s.Ids[j];
                    if (s.Trained[j + 1]) { target[o] = s.Ids[j + 1]; normalizer++; }
                    pos[o] = j;
                    seg[o] = k;
                    inv[o] = 1f / MathF.Sqrt(n);
                }
                tokens += n;
            }
        }
        var inputT = tensor(input, dtype: int64, device: device).view(b, t);
        var targetT = tensor(target, dtype: int64, device: device).view(b, t);
        var invT = tensor(inv, dtype: float32, device: device).view(b, t, 1);
        Tensor? posT = null, maskT = null;
        if (packed)
        {
            posT = tensor(pos, dtype: int64, device: device).view(b, t);
            using var segT = tensor(seg, dtype: int64, device: device).view(b, t);
            using var same = segT.unsqueeze(2).eq(segT.unsqueeze(1));                          // (B, T, T): same sample (pads: one block of their own)
            using var causal = ones(t, t, dtype: @bool, device: device).tril();               // (T, T)
            maskT = same.logical_and(causal).unsqueeze(1);                                     // (B, 1, T, T)
        }
        return new SftBatch(inputT, targetT, posT, maskT, invT, step, micro, normalizer, tokens);
    }
}
