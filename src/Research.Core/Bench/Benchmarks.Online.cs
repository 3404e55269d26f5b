using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Stages.Online;
using Research.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Bench;

/// <summary>
/// On-policy speed at one size: rollout tokens/s of G completions of one prompt with the KV cache (<see cref="Rollouts"/>)
/// and without it (every new token re-reads the whole sequence), and the GRPO step's tokens/s (rollouts, rewards, the
/// clipped surrogate's forward and backward, the optimizer; tokens = prompt + completion tokens the training forward reads)
/// with the share of the step spent drawing and scoring rollouts.
/// </summary>
public sealed record OnlineResult(string Name, long Parameters, int Completions, int PromptTokens, int NewTokens,
    double CachedTokensPerS, double UncachedTokensPerS, double CacheSpeedup, double GrpoTokensPerS, double GrpoStepSeconds, double RolloutShare, int Rounds);

public static partial class Benchmarks
{
    const int OnlinePromptTokens = 16;

    /// <summary>Measures <see cref="OnlineResult"/> at <paramref name="s"/>; rounds of the two samplers repeat while the budget lasts.</summary>
    public static OnlineResult Online(BenchSize s, int completions, int newTokens, int grpoSteps, Device device, Budget budget)
    {
        newTokens = Math.Min(newTokens, s.Model.MaxPositionEmbeddings - OnlinePromptTokens);
        using var model = new CausalLM(s.Model, 3);
        model.to(device);
        var prompt = Enumerable.Range(0, OnlinePromptTokens).Select(i => 32 + i).ToArray();
        var sampling = new RolloutOptions { Completions = completions, MaxNewTokens = newTokens, Seed = 5 };
        Rollouts.Sample(model, [prompt], sampling with { MaxNewTokens = 2 });                           // warm-up
        UncachedSample(model, prompt, completions, 2, 5);
        double cached = 0, uncached = 0;
        var rounds = 0;
        while (budget.Another(rounds, 3))
        {
            var sw = Stopwatch.StartNew();
            var rollouts = Rollouts.Sample(model, [prompt], sampling);
            cached += rollouts.Sum(r => r.Tokens.Length) / sw.Elapsed.TotalSeconds;
            sw.Restart();
            var tokens = UncachedSample(model, prompt, completions, newTokens, 5);
            uncached += tokens / sw.Elapsed.TotalSeconds;
            rounds++;
        }
        var (grpoTokensPerS, stepSeconds, rolloutShare) = GrpoSteps(model, completions, newTokens, grpoSteps, device);
        return new OnlineResult(s.Name, model.ParameterCount(), completions, OnlinePromptTokens, newTokens, cached / rounds, uncached / rounds,
            cached / uncached, grpoTokensPerS, stepSeconds, rolloutShare, rounds);
    }

    /// <summary>G completions of one prompt without a cache: each new token is one forward over the whole (G, length) batch. Returns the tokens drawn.</summary>
    static long UncachedSample(CausalLM model, int[] prompt, int completions, int newTokens, ulong seed)
    {
        var device = model.EmbeddingWeight.device;
        model.eval();
        using var noGrad = no_grad();
        using var generator = new Generator(seed, device);
        var rows = Enumerable.Range(0, completions).Select(_ => prompt.Select(t => (long)t).ToList()).ToArray();
        for (var step = 0; step < newTokens; step++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(rows.SelectMany(r => r).ToArray(), dtype: int64, device: device).view(completions, rows[0].Count);
            var logp = model.Forward(ids)[.., -1].to(float32).log_softmax(-1);                             // (G, V)
            var picked = multinomial(logp.exp(), 1, generator: generator).squeeze(1);
            logp.gather(1, picked.unsqueeze(1));                                                        // the log-prob the sampler records
            var next = picked.cpu().data<long>().ToArray();
            for (var j = 0; j < completions; j++) rows[j].Add(next[j]);
        }
        model.train();
        return (long)completions * newTokens;
    }

    /// <summary>
    /// Trainer.Run of grpo for 1 + <paramref name="steps"/> + 1 steps (2 prompts x G completions, a reward that is cheap to
    /// score); the steps after the first are timed. Returns tokens/s, seconds per step and the rollouts' share of it.
    /// </summary>
    static (double TokensPerS, double StepSeconds, double RolloutShare) GrpoSteps(CausalLM model, int completions, int newTokens, int steps, Device device)
    {
        var dir = Path.Combine(Path.GetTempPath(), "research-bench", Guid.NewGuid().ToString("N"));
        try
        {
            var prompts = Enumerable.Range(0, 4).Select(i => new PromptExample($"question {i:D2}: what is it?", "a", "bench", i + 1)).ToArray();
            var train = new TrainConfig
            {
                Steps = steps + 2, BatchSize = 1, LearningRate = 1e-5, WarmupSteps = 0, Schedule = LrSchedule.Constant, LogEvery = 1, EvalEvery = 0, CheckpointEvery = 0, Seed = 1,
            };
            var o = new GrpoOptions
            {
                DataPath = "bench", Reward = [new("contains_answer")], Group = completions, PromptsPerStep = 2, MaxNewTokens = newTokens,
                StopTokens = [], Train = train,
            };
            var timed = new TimedGrpo(new GrpoObjective(model, ByteTokenizer.Instance, prompts, o, 1, "bench"), 1, 1 + steps);
            Trainer.Run(model, ByteTokenizer.Instance, timed, train, dir, validate: null, log: TextWriter.Null);
            var seconds = (double)(timed.End - timed.Start) / Stopwatch.Frequency;
            return (timed.Tokens / seconds, seconds / steps, timed.SamplingTicks / (double)(timed.End - timed.Start));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Times steps [from, to) of a grpo run: their span, the tokens they read, and the time spent building their batches (rollouts and rewards).</summary>
    sealed class TimedGrpo(GrpoObjective inner, long from, long to) : IObjective<GrpoBatch>
    {
        public long Start { get; private set; }
        public long End { get; private set; }
        public long Tokens { get; private set; }
        public long SamplingTicks { get; private set; }
        public string Kind => inner.Kind;
        public string Fingerprint => inner.Fingerprint;

        public GrpoBatch Batch(long step, int micro, TrainConfig config, Device device)
        {
            if (micro == 0 && step == from) Start = Stopwatch.GetTimestamp();
            if (micro == 0 && step == to) End = Stopwatch.GetTimestamp();
            var t0 = Stopwatch.GetTimestamp();
            var batch = inner.Batch(step, micro, config, device);
            if (step >= from && step < to) { SamplingTicks += Stopwatch.GetTimestamp() - t0; Tokens += batch.Tokens; }
            return batch;
        }

        public Tensor Loss(CausalLM model, GrpoBatch batch, MetricSink metrics) => inner.Loss(model, batch, metrics);
    }
}
