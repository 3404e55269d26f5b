using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>
/// One batch of rollouts on its device, for optimisation iteration <see cref="Iteration"/> on it (0: the policy is still
/// the sampler). <see cref="ReferenceLogProbs"/> is there when the stage has a KL penalty.
/// </summary>
public sealed class GrpoBatch(Tensor input, Tensor targets, Tensor mask, Tensor oldLogProbs, Tensor? referenceLogProbs, Tensor advantages,
    long normalizer, long tokens, IReadOnlyDictionary<string, double> stats, int iteration) : IBatch
{
    public Tensor Input { get; } = input;
    public Tensor Targets { get; } = targets;
    public Tensor Mask { get; } = mask;
    public Tensor OldLogProbs { get; } = oldLogProbs;
    public Tensor? ReferenceLogProbs { get; } = referenceLogProbs;
    public Tensor Advantages { get; } = advantages;
    public long Normalizer { get; } = normalizer;
    public long Tokens { get; } = tokens;
    /// <summary>What the rollouts scored (reward mean and spread, kept groups, lengths), logged with the step.</summary>
    public IReadOnlyDictionary<string, double> Stats { get; } = stats;
    public int Iteration { get; } = iteration;

    public void Dispose()
    {
        Input.Dispose(); Targets.Dispose(); Mask.Dispose(); OldLogProbs.Dispose(); ReferenceLogProbs?.Dispose(); Advantages.Dispose();
    }
}

/// <summary>
/// GRPO (and RLOO) as an objective of the one training loop. Step s trains on rollout batch s / mu (mu =
/// <see cref="GrpoOptions.Iterations"/>), drawn at its first iteration from the current policy with streams seeded by
/// (seed, batch, micro) and held for the other mu - 1 (the sampler's log-probs are the old policy's). The held batch is
/// the objective's state: it goes into the resumable checkpoint, so a run killed between two iterations resumes on the
/// same rollouts; a new batch is a function of its index and the model, which a resumed run restores bit for bit.
/// </summary>
public sealed class GrpoObjective(CausalLM policy, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, GrpoOptions options, long seed, string fingerprint,
    CausalLM? reference = null, IReadOnlyList<(IReward Reward, double Weight)>? rewards = null) : IObjective<GrpoBatch>, IStatefulObjective
{
    /// <summary>The reward's terms as values: the given ones (a reward model the stage loaded, with the named ones), else the named ones.</summary>
    readonly IReadOnlyList<(IReward Reward, double Weight)> _rewards = rewards ?? Rewards.Resolve(options.Reward);
    readonly int[][] _promptIds = prompts.Select(p => Ids(tokenizer, p.Prompt)).ToArray();
    readonly int[][] _demonstrations = options.Prefix.Enabled ? prompts.Select(p => tokenizer.Encode(p.Demonstration
        ?? throw new ArgumentException($"{p.Source}:{p.Line}: prefix sampling needs a \"demonstration\" for every prompt"))).ToArray() : [];
    readonly Dictionary<int, RolloutBatch> _held = new();
    long _generation = -1;

    public string Kind => "grpo";
    public string Fingerprint => fingerprint;

    /// <summary>The ids a prompt is sampled after: BOS when the tokenizer starts texts with it, then the text.</summary>
    public static int[] Ids(ITokenizer tokenizer, string prompt) =>
        tokenizer.AddsBos ? [tokenizer.BosId, .. tokenizer.Encode(prompt)] : tokenizer.Encode(prompt);

    public GrpoBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var generation = step / options.Iterations;
        var iteration = (int)(step % options.Iterations);
        if (generation != _generation) { _held.Clear(); _generation = generation; }
        if (!_held.TryGetValue(micro, out var batch))
        {
            if (iteration > 0)
                throw new InvalidOperationException($"grpo: step {step} is iteration {iteration} on rollout batch {generation}, which was neither drawn in this run nor restored from a checkpoint");
            _held[micro] = batch = Sample(generation, micro, config.Steps / options.Iterations, device);
        }
        return batch.ToDevice(device, iteration);
    }

    /// <summary>Draws, scores and lays out rollout batch <paramref name="generation"/> (micro-batch <paramref name="micro"/>).</summary>
    RolloutBatch Sample(long generation, int micro, long generations, Device device)
    {
        var o = options;
        var rng = new Rng(Rng.Derive(seed, generation, micro, 1));
        var chosen = rng.Permutation(_promptIds.Length).Take(Math.Min(o.PromptsPerStep, _promptIds.Length)).ToArray();
        var prefixes = chosen.Select(i => o.Prefix.Enabled ? _demonstrations[i][..o.Prefix.Tokens(_demonstrations[i].Length, generation, generations)] : []).ToArray();
        var contexts = chosen.Select((p, k) => _promptIds[p].Concat(prefixes[k]).ToArray()).ToArray();
        var rollouts = Rollouts.Sample(policy, contexts.Select(c => (IReadOnlyList<int>)c).ToArray(), new RolloutOptions
        {
            Completions = o.Group, MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP,
            Seed = unchecked((long)Rng.Derive(seed, generation, micro, 2)), StopTokens = [tokenizer.EosId, .. o.StopTokens],
        }, tokenizer);
        var rewards = rollouts.Select(r =>
        {
            var p = prompts[chosen[r.Prompt]];
            var completion = prefixes[r.Prompt].Concat(r.Tokens.Where(t => t != tokenizer.EosId));         // the reward sees the prefix too
            return Rewards.Score(_rewards, p.Prompt, tokenizer.Decode(completion), p.Answer, chosen[r.Prompt]);
        }).ToArray();
        using var rewardTensor = tensor(rewards, dtype: float64);
        using var allAdvantages = GrpoLosses.Advantages(rewardTensor, o.Group, o.Baseline, o.Scale);
        var informative = GrpoLosses.InformativeGroups(rewardTensor, o.Group);
        // With every group uninformative the step keeps them all: their advantages are 0, so it changes nothing but is logged.
        var keep = Enumerable.Range(0, rollouts.Count).Where(i => !o.FilterUninformative || informative[i / o.Group] || !informative.Any(x => x)).ToArray();
        var adv = allAdvantages.data<double>().ToArray();

        var rows = keep.Select(i => (Context: contexts[rollouts[i].Prompt], R: rollouts[i], A: adv[i])).ToArray();
        var width = rows.Max(x => x.Context.Length + x.R.Tokens.Length) - 1;
        var input = new long[rows.Length * width];
        var targets = new long[rows.Length * width];
        var mask = new float[rows.Length * width];
        var old = new float[rows.Length * width];
        Array.Fill(input, tokenizer.PadId);
        Array.Fill(targets, tokenizer.PadId);
        long active = 0, read = 0;
        for (var b = 0; b < rows.Length; b++)
        {
            var (context, r, _) = rows[b];
            var seq = context.Concat(r.Tokens).ToArray();
            for (var t = 0; t < seq.Length - 1; t++) { input[b * width + t] = seq[t]; targets[b * width + t] = seq[t + 1]; }
            for (var j = 0; j < r.Tokens.Length; j++)
            {
                var at = b * width + context.Length - 1 + j;                 // the position whose target is completion token j
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
        if (o.Prefix.Enabled) stats["prefix_tokens"] = prefixes.Average(p => p.Length);
        var referenceLogProbs = reference is null ? null : ReferenceLogProbs(reference, input, targets, rows.Length, width, o.Temperature, device);
        return new RolloutBatch(rows.Length, width, input, targets, mask, old, referenceLogProbs, rows.Select(x => (float)x.A).ToArray(), normalizer, read, stats);
    }

    /// <summary>The frozen reference's log-probs of every target at the sampler's temperature (what TRL's k3 compares with).</summary>
    static float[] ReferenceLogProbs(CausalLM reference, long[] input, long[] targets, int rows, int width, double temperature, Device device)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(input, dtype: int64, device: device).view(rows, width);
        var tgt = tensor(targets, dtype: int64, device: device).view(rows, width);
        var logits = reference.Forward(ids).to(float32) / temperature;
        return logits.log_softmax(-1).gather(2, tgt.unsqueeze(2)).squeeze(2).cpu().data<float>().ToArray();
    }

    public Tensor Loss(CausalLM model, GrpoBatch batch, MetricSink metrics)
    {
        var o = options;
        var logits = model.Forward(batch.Input).to(float32) / o.Temperature;
        var logp = logits.log_softmax(-1).gather(2, batch.Targets.unsqueeze(2)).squeeze(2);              // (B, W)
        var old = batch.OldLogProbs;
        var s = GrpoLosses.Surrogate(logp * batch.Mask, old * batch.Mask, batch.Advantages, o.EpsLow, o.EpsHigh,
            o.Beta, batch.ReferenceLogProbs is { } r ? r * batch.Mask : null);
        var n = batch.Mask.sum().clamp_min(1);
        using (no_grad())
        {
            foreach (var (k, v) in batch.Stats) { using var x = tensor(v, dtype: float64); metrics.Add(k, x); }
            metrics.Add("clip_low", (s.ClippedLow.to(float32) * batch.Mask).sum() / n);
            metrics.Add("clip_high", (s.ClippedHigh.to(float32) * batch.Mask).sum() / n);
            if (s.Kl is not null) metrics.Add("kl", (s.Kl * batch.Mask).sum() / n);
            // At the first iteration the policy is the sampler: this is the sampler-vs-training log-prob gap (0 ideally).
            if (batch.Iteration == 0) metrics.Add("sampler_logprob_max_diff", ((logp - old).abs() * batch.Mask).max());
        }
        // The loop divides the summed loss by the normalizers of the step's micro-batches: the aggregate times this
        // batch's normalizer is that sum (completions for grpo, completions x max length for dr_grpo, tokens otherwise).
        return GrpoLosses.Aggregate(s.PerTokenLoss, batch.Mask, o.Aggregation, o.MaxNewTokens, batch.Normalizer) * batch.Normalizer;
    }

    /// <summary>The held rollout batch (its index and every micro-batch): what a resume between two iterations needs.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        yield return new("generation", tensor(new[] { _generation }, dtype: int64));
        foreach (var (micro, b) in _held.OrderBy(kv => kv.Key))
            foreach (var kv in b.ToTensors($"micro{micro}/")) yield return kv;
    }

    public void LoadState(IReadOnlyDictionary<string, Tensor> state, string source)
    {
        _held.Clear();
        _generation = state.TryGetValue("generation", out var g) ? g.data<long>()[0]
            : throw new InvalidDataException($"{source}: no 'generation' entry; delete the checkpoint directory to train from the start");
        foreach (var micro in state.Keys.Where(k => k.StartsWith("micro", StringComparison.Ordinal) && k.EndsWith("/input", StringComparison.Ordinal))
                     .Select(k => int.Parse(k["micro".Length..k.IndexOf('/')], System.Globalization.CultureInfo.InvariantCulture)))
            _held[micro] = RolloutBatch.FromTensors(state, $"micro{micro}/", source);
    }
}
