using System.Security.Cryptography;
using Research.Data;
using Research.Models;
using Research.Stages.Uda;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Reward;

/// <summary>B pairs as one (2B, T) right-padded forward: the chosen rows, then the rejected rows; margins (B). Normalizer B.</summary>
public sealed record RewardBatch(Tensor Ids, Tensor Margins, long Normalizer, long Tokens) : IBatch
{
    public void Dispose()
    {
        Ids.Dispose();
        Margins.Dispose();
    }
}

/// <summary>
/// The reward model's objective in the one loop: the summed Bradley–Terry loss of a batch of pairs, each reward the one-label
/// head at the row's last non-pad token. Pair order is a seeded permutation per epoch, so batch (step, micro) is a pure function.
/// </summary>
public sealed class RewardObjective : IObjective<RewardBatch>
{
    readonly IReadOnlyList<RewardPair> _pairs;
    readonly int _pad;
    readonly Dictionary<long, int[]> _perms = new();

    public RewardObjective(IReadOnlyList<RewardPair> train, int padId)
    {
        if (train.Count == 0) throw new ArgumentException("reward: no training pairs");
        (_pairs, _pad) = (train, padId);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in train)
        {
            foreach (var row in new[] { p.Chosen, p.Rejected })
            {
                sha.AppendData(BitConverter.GetBytes(row.Length));
                sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()));
            }
            sha.AppendData(BitConverter.GetBytes(p.Margin));
        }
        Fingerprint = Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public string Kind => "reward";
    public string Fingerprint { get; }

    public RewardBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var n = _pairs.Count;
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var pairs = new RewardPair[config.BatchSize];
        for (var i = 0; i < pairs.Length; i++)
        {
            var g = first + i;
            var epoch = g / n;
            if (!_perms.TryGetValue(epoch, out var perm)) _perms[epoch] = perm = new Rng(Rng.Derive(config.Seed, 0x5C0E, epoch)).Permutation(n);
            pairs[i] = _pairs[perm[g % n]];
        }
        var rows = pairs.Select(p => p.Chosen).Concat(pairs.Select(p => p.Rejected)).ToArray();
        var ids = ClassifyBatch.Collate(rows, _pad, device);
        return new RewardBatch(ids, tensor(pairs.Select(p => (float)p.Margin).ToArray(), device: device), pairs.Length, rows.Sum(r => (long)r.Length));
    }

    public Tensor Loss(CausalLM model, RewardBatch batch, MetricSink metrics)
    {
        var b = batch.Normalizer;
        var r = SequenceClassification.Logits(model, SequenceClassification.Features(model, batch.Ids)).to(float32).squeeze(-1);   // (2B)
        var chosen = r.narrow(0, 0, b);
        var rejected = r.narrow(0, b, b);
        var losses = RewardLosses.BradleyTerry(chosen, rejected, batch.Margins);
        using (no_grad())
        {
            metrics.Add("accuracy", chosen.gt(rejected).to(float32).mean());
            metrics.Add("rewards/chosen", chosen.mean());
            metrics.Add("rewards/rejected", rejected.mean());
            metrics.Add("rewards/margins", (chosen - rejected).mean());
        }
        return losses.sum();
    }
}
