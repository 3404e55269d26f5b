using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>
/// AdamW's whole update in one pass over memory, for contiguous CPU buffers: each element's parameter,
/// gradient and two moments are read once and written once (28 bytes per float32 parameter), where the same
/// update as separate libtorch kernels streams every buffer through memory eight or nine times. The buffers
/// are walked in cache-sized chunks, spread over the cores; the arithmetic is elementwise, so the result does
/// not depend on the number of threads. Parameters may be bf16 with float32 master weights (mixed precision):
/// the bf16 gradient is widened exactly and the new bf16 parameters are rounded to nearest even from the
/// master weights, as libtorch's float-to-bf16 copy does.
/// </summary>
static unsafe class FusedAdamW
{
    /// <summary>Elements per chunk: 32K floats of parameter, gradient and both moments is 512 KB, inside L2.</summary>
    const int Chunk = 1 << 15;

    /// <summary>The scalars of one step, already in float32 as the tensor kernels use them.</summary>
    public readonly record struct Coefficients(float Decay, float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2,
        float InvSqrtBc2, float Epsilon, float StepSize);

    public static Coefficients For(double lr, TrainConfig c, long step, bool decay) => new(
        decay ? (float)(1 - lr * c.WeightDecay) : 1f, (float)c.Beta1, (float)(1 - c.Beta1), (float)c.Beta2, (float)(1 - c.Beta2),
        (float)(1 / Math.Sqrt(1 - Math.Pow(c.Beta2, step))), (float)c.Epsilon, (float)(lr / (1 - Math.Pow(c.Beta1, step))));

    /// <summary>Whether the fused update applies: CPU, contiguous, float32 moments, float32 or bf16 parameters.</summary>
    public static bool Supports(Tensor parameters, Tensor gradients, Tensor? master) =>
        parameters.device_type == DeviceType.CPU && parameters.is_contiguous() && gradients.is_contiguous()
        && (master is null ? parameters.dtype == ScalarType.Float32 : parameters.dtype == ScalarType.BFloat16 && master.is_contiguous());

    /// <summary>
    /// One AdamW step: target = master weights when given (then parameters receive their bf16 rounding), else the
    /// float32 parameters themselves.
    /// </summary>
    public static void Step(Tensor parameters, Tensor gradients, Tensor? master, Tensor m, Tensor v, Coefficients c)
    {
        long n = parameters.numel();
        if (n == 0) return;
        nint p = Address(parameters), g = Address(gradients), mp = Address(m), vp = Address(v);
        nint w = master is null ? 0 : Address(master);
        long chunks = (n + Chunk - 1) / Chunk;
        void Run(long k)
        {
            long start = k * Chunk;
            int count = (int)Math.Min(Chunk, n - start);
            if (w == 0)
                Float32((float*)p + start, (float*)g + start, (float*)mp + start, (float*)vp + start, count, c);
            else
                Mixed((ushort*)p + start, (ushort*)g + start, (float*)w + start, (float*)mp + start, (float*)vp + start, count, c);
        }
        if (chunks == 1) Run(0);
        else Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) }, Run);
    }

    static nint Address(Tensor t)
    {
        // A span over the tensor's first element: one over all of it cannot pass int.MaxValue bytes (537M float32 parameters,
        // so Qwen3-0.6B's 596M failed). Native memory, so the address stays valid after the fixed block.
        using var first = t.view(-1).narrow(0, 0, 1);
        fixed (byte* b = first.bytes) return (nint)b;
    }

    /// <summary>The coefficients broadcast to 16 lanes.</summary>
    readonly struct Lanes(Coefficients c)
    {
        public readonly Vector512<float> Decay = Vector512.Create(c.Decay), Beta1 = Vector512.Create(c.Beta1), OneMinusBeta1 = Vector512.Create(c.OneMinusBeta1),
            Beta2 = Vector512.Create(c.Beta2), OneMinusBeta2 = Vector512.Create(c.OneMinusBeta2), InvSqrtBc2 = Vector512.Create(c.InvSqrtBc2),
            Epsilon = Vector512.Create(c.Epsilon), StepSize = Vector512.Create(c.StepSize);
    }

    /// <summary>16 elements: moments updated and stored, returns the new weights (not stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Update(in Lanes c, Vector512<float> g, float* m, float* v, Vector512<float> w)
    {
        var mi = Vector512.FusedMultiplyAdd(g, c.OneMinusBeta1, Vector512.Load(m) * c.Beta1);
        var vi = Vector512.FusedMultiplyAdd(g * g, c.OneMinusBeta2, Vector512.Load(v) * c.Beta2);
        var denom = Vector512.Sqrt(vi) * c.InvSqrtBc2 + c.Epsilon;
        mi.Store(m); vi.Store(v);
        return w * c.Decay - c.StepSize * (mi / denom);
    }

    /// <summary>One element, the same arithmetic as <see cref="Update(in Lanes, Vector512{float}, float*, float*, Vector512{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Update(in Coefficients c, float g, float* m, float* v, float w)
    {
        float mi = MathF.FusedMultiplyAdd(g, c.OneMinusBeta1, *m * c.Beta1);
        float vi = MathF.FusedMultiplyAdd(g * g, c.OneMinusBeta2, *v * c.Beta2);
        float denom = MathF.Sqrt(vi) * c.InvSqrtBc2 + c.Epsilon;
        *m = mi; *v = vi;
        return w * c.Decay - c.StepSize * (mi / denom);
    }

    static void Float32(float* p, float* g, float* m, float* v, int n, Coefficients c)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var lanes = new Lanes(c);
            for (; i <= n - 16; i += 16)
                Update(lanes, Vector512.Load(g + i), m + i, v + i, Vector512.Load(p + i)).Store(p + i);
        }
        for (; i < n; i++) p[i] = Update(c, g[i], m + i, v + i, p[i]);
    }

    static void Mixed(ushort* p, ushort* g, float* w, float* m, float* v, int n, Coefficients c)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var lanes = new Lanes(c);
            for (; i <= n - 32; i += 32)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Load(g + i));
                var w0 = Update(lanes, Vector512.ShiftLeft(lo, 16).AsSingle(), m + i, v + i, Vector512.Load(w + i));
                var w1 = Update(lanes, Vector512.ShiftLeft(hi, 16).AsSingle(), m + i + 16, v + i + 16, Vector512.Load(w + i + 16));
                w0.Store(w + i); w1.Store(w + i + 16);
                Vector512.Narrow(RoundToBf16(w0), RoundToBf16(w1)).Store(p + i);
            }
        }
        for (; i < n; i++)
        {
            w[i] = Update(c, BitConverter.Int32BitsToSingle(g[i] << 16), m + i, v + i, w[i]);
            p[i] = ToBf16(w[i]);
        }
    }

    /// <summary>float32 → bf16 bits in the low half, round to nearest even; NaN stays a quiet NaN (c10::BFloat16's rule).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<uint> RoundToBf16(Vector512<float> x)
    {
        var bits = x.AsUInt32();
        var rounded = (bits + (Vector512.ShiftRightLogical(bits, 16) & Vector512.Create(1u)) + Vector512.Create(0x7FFFu)) >>> 16;
        var nan = ~Vector512.Equals(x, x).AsUInt32();
        return Vector512.ConditionalSelect(nan, Vector512.Create(0x7FC0u), rounded);
    }

    static ushort ToBf16(float x)
    {
        if (float.IsNaN(x)) return 0x7FC0;
        uint bits = BitConverter.SingleToUInt32Bits(x);
        return (ushort)((bits + ((bits >> 16) & 1) + 0x7FFF) >> 16);
    }
}
