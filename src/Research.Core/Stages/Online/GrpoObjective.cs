using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>
/// One batch of rollouts, laid out for the training forward: rows are prompt + completion (right-padded), the mask marks
/// the completion's target positions, <see cref="OldLogProbs"/> holds the sampler's log-probs there.
/// </summary>
public sealed class GrpoBatch(Tensor input, Tensor targets, Tensor mask, Tensor oldLogProbs, Tensor advantages, long normalizer, long tokens,
    IReadOnlyDictionary<string, double> stats) : IBatch
{
    public Tensor Input { get; } = input;
    public Tensor Targets { get; } = targets;
    public Tensor Mask { get; } = mask;
    public Tensor OldLogProbs { get; } = oldLogProbs;
    public Tensor Advantages { get; } = advantages;
    public long Normalizer { get; } = normalizer;
    public long Tokens { get; } = tokens;
    /// <summary>What the rollouts scored (reward mean and spread, kept groups, lengths), logged with the step.</summary>
    public IReadOnlyDictionary<string, double> Stats { get; } = stats;

    public void Dispose()
    {
        Input.Dispose(); Targets.Dispose(); Mask.Dispose(); OldLogProbs.Dispose(); Advantages.Dispose();
    }
}

/// <summary>
/// GRPO as an objective of the one training loop. Batch(step, micro) samples prompts and rollouts from the current
/// policy with streams seeded by (seed, step, micro): the batch is a function of the step and of the model, which a
/// resumed run restores bit for bit, so it needs no state of its own in the checkpoint.
/// </summary>
public sealed class GrpoObjective(CausalLM policy, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, GrpoOptions options, long seed, string fingerprint)
    : IObjective<GrpoBatch>
{
    readonly int[][] _promptIds = prompts.Select(p => Ids(tokenizer, p.Prompt)).ToArray();

    public string Kind => "grpo";
    public string Fingerprint => fingerprint;

    /// <summary>The ids a prompt is sampled after: BOS when the tokenizer starts texts with it, then the text.</summary>
    public static int[] Ids(ITokenizer tokenizer, string prompt) =>
        tokenizer.AddsBos ? [tokenizer.BosId, .. tokenizer.Encode(prompt)] : tokenizer.Encode(prompt);

    public GrpoBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var o = options;
        var rng = new Rng(Rng.Derive(seed, step, micro, 1));
        var chosen = rng.Permutation(_promptIds.Length).Take(Math.Min(o.PromptsPerStep, _promptIds.Length)).ToArray();
        var rollouts = Rollouts.Sample(policy, chosen.Select(i => (IReadOnlyList<int>)_promptIds[i]).ToArray(), new RolloutOptions
        {
            Completions = o.Group, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
            Seed = unchecked((long)Rng.Derive(seed, step, micro, 2)), StopTokens = [tokenizer.EosId, .. o.StopTokens],
        }, tokenizer);
        var rewards = rollouts.Select(r =>
        {
            var p = prompts[chosen[r.Prompt]];
            return Rewards.Score(o.Reward, p.Prompt, tokenizer.Decode(r.Tokens.Where(t => t != tokenizer.EosId)), p.Answer, chosen[r.Prompt]);
        }).ToArray();
        using var rewardTensor = tensor(rewards, dtype: float64);
        using var allAdvantages = GrpoLosses.GroupAdvantages(rewardTensor, o.Group, o.Scale);
        var informative = GrpoLosses.InformativeGroups(rewardTensor, o.Group);
        // With every group uninformative the step keeps them all: their advantages are 0, so it changes nothing but is logged.
        var keep = Enumerable.Range(0, rollouts.Count).Where(i => !o.FilterUninformative || informative[i / o.Group] || !informative.Any(x => x)).ToArray();
        var adv = allAdvantages.data<double>().ToArray();

        var rows = keep.Select(i => (Prompt: _promptIds[chosen[rollouts[i].Prompt]], R: rollouts[i], A: adv[i])).ToArray();
        var width = rows.Max(x => x.Prompt.Length + x.R.Tokens.Length) - 1;
        var input = new long[rows.Length * width];
        var targets = new long[rows.Length * width];
        var mask = new float[rows.Length * width];
        var old = new float[rows.Length * width];
        Array.Fill(input, tokenizer.PadId);
        Array.Fill(targets, tokenizer.PadId);
        long active = 0, read = 0;
        for (var b = 0; b < rows.Length; b++)
        {
            var (prompt, r, _) = rows[b];
            var seq = prompt.Concat(r.Tokens).ToArray();
            for (var t = 0; t < seq.Length - 1; t++) { input[b * width + t] = seq[t]; targets[b * width + t] = seq[t + 1]; }
            for (var j = 0; j < r.Tokens.Length; j++)
            {
                var at = b * width + prompt.Length - 1 + j;                  // the position whose target is completion token j
                mask[at] = 1;
                old[at] = r.LogProbs[j];
            }
            active += r.Tokens.Length;
            read += seq.Length - 1;
        }
        var normalizer = o.Aggregation switch
        {
            LossAggregation.Grpo => rows.Length,
            LossAggregation.DrGrpo => (long)rows.Length * o.MaxNewTokens,
            _ => Math.Max(1, active),
        };
        var stats = new Dictionary<string, double>
        {
            ["reward"] = rewards.Average(),
            ["reward_std"] = rewards.Length > 1 ? Math.Sqrt(Research.Eval.Statistics.Variance(rewards)) : 0,
            ["informative_groups"] = informative.Count(x => x) / (double)informative.Length,
            ["completion_length"] = rollouts.Average(r => r.Tokens.Length),
        };
        return new GrpoBatch(
            tensor(input, dtype: int64, device: device).view(rows.Length, width),
            tensor(targets, dtype: int64, device: device).view(rows.Length, width),
            tensor(mask, dtype: float32, device: device).view(rows.Length, width),
            tensor(old, dtype: float32, device: device).view(rows.Length, width),
            tensor(rows.Select(x => (float)x.A).ToArray(), dtype: float32, device: device),
            normalizer, read, stats);
    }

    public Tensor Loss(CausalLM model, GrpoBatch batch, MetricSink metrics)
    {
        var o = options;
        var logits = model.Forward(batch.Input).to(float32) / o.Temperature;
        var logp = logits.log_softmax(-1).gather(2, batch.Targets.unsqueeze(2)).squeeze(2);              // (B, W)
        var old = batch.OldLogProbs;
        var s = GrpoLosses.Surrogate(logp * batch.Mask, old * batch.Mask, batch.Advantages, o.EpsLow, o.EpsHigh);
        var n = batch.Mask.sum().clamp_min(1);
        using (no_grad())
        {
            foreach (var (k, v) in batch.Stats) { using var x = tensor(v, dtype: float64); metrics.Add(k, x); }
            metrics.Add("clip_low", (s.ClippedLow.to(float32) * batch.Mask).sum() / n);
            metrics.Add("clip_high", (s.ClippedHigh.to(float32) * batch.Mask).sum() / n);
            // Before the step the policy is the sampler: this is the sampler-vs-training log-prob gap (0 ideally).
            metrics.Add("sampler_logprob_max_diff", ((logp - old).abs() * batch.Mask).max());
        }
        // The loop divides the summed loss by the normalizers of the step's micro-batches: the aggregate times this
        // batch's normalizer is that sum (completions for grpo, completions x max length for dr_grpo, tokens otherwise).
        return GrpoLosses.Aggregate(s.PerTokenLoss, batch.Mask, o.Aggregation, o.MaxNewTokens, batch.Normalizer) * batch.Normalizer;
    }
}
