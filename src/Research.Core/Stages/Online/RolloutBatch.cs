using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>
/// One batch of scored rollouts on the host, laid out for the training forward: <see cref="Rows"/> rows of prompt +
/// completion (right-padded to <see cref="Width"/>), the mask on the completion's target positions, the sampler's
/// log-probs there (the old policy's), the frozen reference's when a KL penalty is asked for, and one advantage per row.
/// It is kept for every optimisation iteration on it and saved in the resumable checkpoint (<see cref="ToTensors"/>), so a
/// run resumed between two iterations trains on the rollouts it drew before the kill.
/// </summary>
public sealed record RolloutBatch(int Rows, int Width, long[] Input, long[] Targets, float[] Mask, float[] OldLogProbs, float[]? ReferenceLogProbs,
    float[] Advantages, long Normalizer, long Tokens, IReadOnlyDictionary<string, double> Stats)
{
    /// <summary>The batch on <paramref name="device"/> for optimisation iteration <paramref name="iteration"/> (0: the policy is the sampler).</summary>
    public GrpoBatch ToDevice(Device device, int iteration) => new(
        tensor(Input, dtype: int64, device: device).view(Rows, Width),
        tensor(Targets, dtype: int64, device: device).view(Rows, Width),
        tensor(Mask, dtype: float32, device: device).view(Rows, Width),
        tensor(OldLogProbs, dtype: float32, device: device).view(Rows, Width),
        ReferenceLogProbs is null ? null : tensor(ReferenceLogProbs, dtype: float32, device: device).view(Rows, Width),
        tensor(Advantages, dtype: float32, device: device),
        Normalizer, Tokens, Stats, iteration);

    /// <summary>The batch as named CPU tensors under <paramref name="prefix"/> (exact: the same bits come back).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> ToTensors(string prefix)
    {
        var shape = new long[] { Rows, Width };
        yield return new(prefix + "input", tensor(Input, dtype: int64).view(shape));
        yield return new(prefix + "targets", tensor(Targets, dtype: int64).view(shape));
        yield return new(prefix + "mask", tensor(Mask, dtype: float32).view(shape));
        yield return new(prefix + "old_logprobs", tensor(OldLogProbs, dtype: float32).view(shape));
        if (ReferenceLogProbs is not null) yield return new(prefix + "ref_logprobs", tensor(ReferenceLogProbs, dtype: float32).view(shape));
        yield return new(prefix + "advantages", tensor(Advantages, dtype: float32));
        yield return new(prefix + "counts", tensor(new[] { Normalizer, Tokens }, dtype: int64));
        foreach (var (k, v) in Stats) yield return new(prefix + "stat/" + k, tensor(new[] { v }, dtype: float64));
    }

    /// <summary>What <see cref="ToTensors"/> wrote under <paramref name="prefix"/>; a missing or misshapen entry names <paramref name="source"/>.</summary>
    public static RolloutBatch FromTensors(IReadOnlyDictionary<string, Tensor> state, string prefix, string source)
    {
        Tensor Need(string name) => state.TryGetValue(prefix + name, out var t) ? t
            : throw new InvalidDataException($"{source}: the held rollouts lack '{prefix + name}'; delete the checkpoint directory to train from the start");
        var input = Need("input");
        if (input.dim() != 2) throw new InvalidDataException($"{source}: '{prefix}input' must be (rows, width)");
        var (rows, width) = ((int)input.shape[0], (int)input.shape[1]);
        float[] Floats(Tensor t, long n) => t.numel() == n ? t.to(float32).data<float>().ToArray()
            : throw new InvalidDataException($"{source}: a held rollout tensor has {t.numel()} values where {n} belong");
        var counts = Need("counts").data<long>().ToArray();
        if (counts.Length != 2) throw new InvalidDataException($"{source}: '{prefix}counts' must hold 2 values");
        var stats = state.Where(kv => kv.Key.StartsWith(prefix + "stat/", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[(prefix.Length + 5)..], kv => kv.Value.to(float64).item<double>());
        return new RolloutBatch(rows, width, input.data<long>().ToArray(), Need("targets").data<long>().ToArray(),
            Floats(Need("mask"), (long)rows * width), Floats(Need("old_logprobs"), (long)rows * width),
            state.TryGetValue(prefix + "ref_logprobs", out var r) ? Floats(r, (long)rows * width) : null,
            Floats(Need("advantages"), rows), counts[0], counts[1], stats);
    }
}
