using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>
/// A step of online DPO on its device: P chosen rows then P rejected rows (prompt + sample, right-padded; targets -100 off
/// the sample), the reference's summed log-probs of each (2P), and one weight per pair (0 for a tie).
/// </summary>
public sealed class OnlineDpoBatch(Tensor input, Tensor targets, Tensor referenceSums, Tensor weights, long normalizer, long tokens, IReadOnlyDictionary<string, double> stats) : IBatch
{
    public Tensor Input { get; } = input;
    public Tensor Targets { get; } = targets;
    public Tensor ReferenceSums { get; } = referenceSums;
    public Tensor Weights { get; } = weights;
    public long Normalizer { get; } = normalizer;
    public long Tokens { get; } = tokens;
    public IReadOnlyDictionary<string, double> Stats { get; } = stats;
    public int Pairs => (int)Weights.shape[0];

    public void Dispose()
    {
        Input.Dispose(); Targets.Dispose(); ReferenceSums.Dispose(); Weights.Dispose();
    }
}

/// <summary>
/// Online DPO as an objective of the one training loop: step s samples two completions per prompt from the current policy
/// with streams seeded by (seed, step, micro), so, as in GRPO, a step's batch is a function of the step and the model and a
/// resumed run draws the same pairs. The reference log-probs are computed at sampling time by the frozen parent.
/// </summary>
public sealed class OnlineDpoObjective(CausalLM policy, CausalLM reference, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, OnlineDpoOptions options,
    long seed, string fingerprint, IReadOnlyList<(IReward Reward, double Weight)>? rewards = null) : IObjective<OnlineDpoBatch>
{
    readonly IReadOnlyList<(IReward Reward, double Weight)> _rewards = rewards ?? Rewards.Resolve(options.Reward);
    readonly int[][] _promptIds = prompts.Select(p => GrpoObjective.Ids(tokenizer, p.Prompt)).ToArray();

    public string Kind => "online_dpo";
    public string Fingerprint => fingerprint;

    public OnlineDpoBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var o = options;
        var rng = new Rng(Rng.Derive(seed, step, micro, 1));
        var chosenPrompts = rng.Permutation(_promptIds.Length).Take(Math.Min(o.PromptsPerStep, _promptIds.Length)).ToArray();
        var rollouts = Rollouts.Sample(policy, chosenPrompts.Select(i => (IReadOnlyList<int>)_promptIds[i]).ToArray(), new RolloutOptions
        {
            Completions = 2, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
            Seed = unchecked((long)Rng.Derive(seed, step, micro, 2)), StopTokens = [tokenizer.EosId, .. o.StopTokens],
        }, tokenizer);
        var rewards = rollouts.Select(r =>
        {
            var p = prompts[chosenPrompts[r.Prompt]];
            return Rewards.Score(_rewards, p.Prompt, tokenizer.Decode(r.Tokens.Where(t => t != tokenizer.EosId)), p.Answer, chosenPrompts[r.Prompt]);
        }).ToArray();
        var judged = OnlineDpoLosses.Judge(rewards);
        var order = judged.Select(j => j.Chosen).Concat(judged.Select(j => j.Rejected)).ToArray();          // P chosen rows, then P rejected
        var width = order.Max(i => _promptIds[chosenPrompts[rollouts[i].Prompt]].Length + rollouts[i].Tokens.Length) - 1;
        var input = new long[order.Length * width];
        var targets = new long[order.Length * width];
        Array.Fill(input, tokenizer.PadId);
        Array.Fill(targets, TokenLoss.IgnoreIndex);
        long read = 0;
        for (var b = 0; b < order.Length; b++)
        {
            var r = rollouts[order[b]];
            var prompt = _promptIds[chosenPrompts[r.Prompt]];
            var seq = prompt.Concat(r.Tokens).ToArray();
            for (var t = 0; t < seq.Length - 1; t++) input[b * width + t] = seq[t];
            for (var j = 0; j < r.Tokens.Length; j++) targets[b * width + prompt.Length - 1 + j] = r.Tokens[j];
            read += seq.Length - 1;
        }
        var ids = tensor(input, dtype: int64, device: device).view(order.Length, width);
        var tgt = tensor(targets, dtype: int64, device: device).view(order.Length, width);
        Tensor refSums;
        using (no_grad())
        using (var lp = SequenceLogProbs.Compute(reference, ids, tgt))
            refSums = lp.Sum.detach().clone();
        var kept = judged.Count(j => !j.Tie);
        var stats = new Dictionary<string, double>
        {
            ["reward"] = rewards.Average(),
            ["reward_chosen"] = judged.Average(j => rewards[j.Chosen]),
            ["reward_rejected"] = judged.Average(j => rewards[j.Rejected]),
            ["tied_pairs"] = (judged.Length - kept) / (double)judged.Length,
            ["completion_length"] = rollouts.Average(r => r.Tokens.Length),
        };
        // With every pair tied the step is logged but moves nothing (weights 0); the normaliser stays positive.
        return new OnlineDpoBatch(ids, tgt, refSums, tensor(judged.Select(j => j.Tie ? 0f : 1f).ToArray(), dtype: float32, device: device),
            Math.Max(1, kept), read, stats);
    }

    public Tensor Loss(CausalLM model, OnlineDpoBatch batch, MetricSink metrics)
    {
        var p = batch.Pairs;
        using var all = SequenceLogProbs.Compute(model, batch.Input, batch.Targets);
        var chosen = new SequenceLogProbs(all.Sum.narrow(0, 0, p), all.Count.narrow(0, 0, p));
        var rejected = new SequenceLogProbs(all.Sum.narrow(0, p, p), all.Count.narrow(0, p, p));
        var (sum, pairs) = OnlineDpoLosses.Loss(chosen, rejected, batch.ReferenceSums.narrow(0, 0, p), batch.ReferenceSums.narrow(0, p, p), batch.Weights, options.Preference);
        using (no_grad())
        {
            foreach (var (k, v) in batch.Stats) { using var x = tensor(v, dtype: float64); metrics.Add(k, x); }
            pairs.Report(metrics);
        }
        return sum;
    }
}
