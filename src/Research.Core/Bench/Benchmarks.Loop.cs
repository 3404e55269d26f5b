using System.Diagnostics;
using Research.Data;
using Research.Models;
using Research.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Bench;

/// <summary>Training-loop numbers of one model size. bf16 numbers are NaN where bf16 was not measured (no native bf16: see <see cref="BenchReport.Bf16"/>).</summary>
/// <param name="OurTokensPerS">Trainer.Run, timed between the start of step W and the start of step W + Steps.</param>
/// <param name="HandTokensPerS">A hand-written TorchSharp loop of the same model, batch and optimizer (our AdamW).</param>
/// <param name="LoopRatio">OurTokensPerS / HandTokensPerS.</param>
/// <param name="FlopsPerToken">6N + 12·L·d_attn·T (nanoGPT's estimate_mfu).</param>
/// <param name="SgemmFlopsPerS">The rate of a training step's three matmuls per linear on the model's own shapes, float32, measured in the same rounds as the loops.</param>
/// <param name="Mfu">FlopsPerToken · OurTokensPerS / SgemmFlopsPerS.</param>
/// <param name="HandMfu">The same for the hand-written loop.</param>
/// <param name="OptimizerShare">Time in AdamW.Step / time of the whole step, in the hand-written loop (synced around the step).</param>
/// <param name="Bf16MatmulSpeedup">bf16 matmul rate / float32 matmul rate on the same shapes.</param>
/// <param name="Bf16ForwardBackwardSpeedup">A hand-written forward + backward of the model cast to bf16 vs float32.</param>
/// <param name="Bf16TrainSpeedup">Trainer.Run tokens/s with Precision.BFloat16 (float32 master weights) / with Float32, same model, batch and steps.</param>
/// <param name="Bf16LossGap">The largest |loss_bf16 − loss_fp32| / loss_fp32 over the steps of those two runs (from the same initial weights).</param>
/// <param name="EvalSequencesPerS">Eval.Perplexity windows of BlockLength per second.</param>
/// <param name="PeerTokensPerS">The same model, batch, optimizer and steps in PyTorch eager (<see cref="PeerLoop"/>), in the same rounds; NaN without the peer.</param>
/// <param name="PeerRatio">OurTokensPerS / PeerTokensPerS.</param>
/// <param name="Rounds">Rounds measured (fewer than asked when the size's budget ran out).</param>
public sealed record SizeResult(
    string Name, long Parameters, int HiddenSize, int Layers, int BatchSize, int BlockLength,
    double OurTokensPerS, double HandTokensPerS, double LoopRatio,
    double FlopsPerToken, double SgemmFlopsPerS, double Mfu, double HandMfu,
    double OptimizerShare, double Bf16MatmulSpeedup, double Bf16ForwardBackwardSpeedup, double EvalSequencesPerS,
    double Bf16TrainSpeedup, double Bf16LossGap, double PeerTokensPerS = double.NaN, double PeerRatio = double.NaN, int Rounds = 0);

public static partial class Benchmarks
{
    /// <summary>
    /// Training loops, sgemm, mfu, optimizer share, the PyTorch peer, bf16 (when <paramref name="bf16"/>) and evaluation
    /// for one size. The loops, the sgemm passes and the peer run in the same interleaved rounds, within the size's budget.
    /// </summary>
    public static SizeResult Size(BenchSize s, BenchOptions o, IReadOnlyList<Document> docs, Device device, bool bf16, PeerLoop? peer,
        ICollection<BudgetUse> budgets)
    {
        var blocks = Blocks(docs, s);
        using var model = new CausalLM(s.Model, seed: 1);
        model.to(device);
        var tokensPerStep = (double)s.BatchSize * s.BlockLength;

        // Interleaved rounds, in alternating order, so drift and order effects cancel: the hand loop, ours, one pass of the
        // sgemm shapes (mfu's denominator, measured at the same time as its numerator) and the PyTorch peer. Each round binds
        // the parameters to its own optimizer's flat buffers, as Trainer.Run does: an optimizer built once would, after the
        // trainer's first run re-bound them, zero and update buffers the model no longer uses.
        var handConfig = Config(s, int.MaxValue);
        long handStep = 0;
        double handSeconds = 0, handOptimizerSeconds = 0, ourSeconds = 0, peerSeconds = 0, sgemmFlops = 0, sgemmSeconds = 0;
        using var meter = new MatmulMeter(s, float32, device);
        void Hand()
        {
            using var handOptimizer = new AdamW(model.named_parameters().Select(p => (p.name, p.parameter)));
            HandSteps(model, handOptimizer, blocks, s, handConfig, ref handStep, o.WarmupSteps, device);
            var (total, opt) = HandSteps(model, handOptimizer, blocks, s, handConfig, ref handStep, o.Steps, device);
            handSeconds += total;
            handOptimizerSeconds += opt;
        }
        void Ours() => ourSeconds += OurSteps(model, blocks, s, o.WarmupSteps, o.Steps, device, null);
        void Sgemm()
        {
            var (f, t) = meter.Pass();
            sgemmFlops += f;
            sgemmSeconds += t;
        }
        void Peer() { if (peer is not null) peerSeconds += peer.Round(o.Steps); }
        Action[] round = [Hand, Ours, Sgemm, Peer];
        var budget = new Budget($"{s.Name}: loops, sgemm and peer rounds", o.SizeSeconds);
        var rounds = 0;
        while (budget.Another(rounds, o.Rounds, minimum: Math.Min(2, o.Rounds)))
        {
            foreach (var a in rounds % 2 == 0 ? round : round.Reverse()) a();
            rounds++;
        }
        budgets.Add(budget.Use($"{rounds} of {o.Rounds} rounds"));
        var timed = (double)o.Steps * rounds * tokensPerStep;
        var ours = timed / ourSeconds;
        var hand = timed / handSeconds;
        var peerRate = peer is null ? double.NaN : timed / peerSeconds;
        var flops = FlopsPerToken(s.Model, MatmulParameters(model), s.BlockLength);
        var sgemm = sgemmFlops / sgemmSeconds;

        double bf16Mm = double.NaN, fwdBwd = double.NaN, bf16Train = double.NaN, bf16Gap = double.NaN;
        if (bf16)
        {
            var b = new Budget($"{s.Name}: bf16", o.Bf16Seconds);
            bf16Mm = MatmulRate(s, bfloat16, o.MatmulRepeats, device, b) / sgemm;
            if (!b.Spent) fwdBwd = ForwardBackwardSpeedup(s, blocks, o, device);
            if (!b.Spent) (bf16Train, bf16Gap) = Bf16Training(s, blocks, o, device);
            budgets.Add(b.Use(double.IsNaN(bf16Train) ? "budget spent before the bf16 training runs" : null));
        }
        var eval = EvalRate(model, docs, s);
        return new SizeResult(s.Name, model.ParameterCount(), s.Model.HiddenSize, s.Model.NumHiddenLayers, s.BatchSize, s.BlockLength,
            ours, hand, ours / hand, flops, sgemm, flops * ours / sgemm, flops * hand / sgemm,
            handOptimizerSeconds / handSeconds, bf16Mm, fwdBwd, eval, bf16Train, bf16Gap, peerRate, ours / peerRate, rounds);
    }

    /// <summary>The hand-written loop: one dispose scope per step, mean cross-entropy, torch's clip_grad_norm_, our AdamW.
    /// Returns (seconds of all steps, seconds inside AdamW.Step), each step synced before and after the optimizer.</summary>
    static (double Total, double Optimizer) HandSteps(CausalLM model, AdamW optimizer, TokenBlocks blocks, BenchSize s, TrainConfig config, ref long step, int steps, Device device)
    {
        model.train();
        var parameters = model.parameters().ToArray();
        long optTicks = 0;
        var start = Stopwatch.GetTimestamp();
        for (int i = 0; i < steps; i++, step++)
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            using var batch = HandBatch(blocks, s, step, device);
            var logits = model.Forward(batch.Input);
            var loss = F.cross_entropy(logits.reshape(-1, logits.shape[^1]), batch.Target.reshape(-1));
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 1.0);
            Sync(loss);
            var t0 = Stopwatch.GetTimestamp();
            optimizer.Step(config.LearningRate, config);
            Sync(parameters[0]);
            optTicks += Stopwatch.GetTimestamp() - t0;
        }
        var total = Stopwatch.GetTimestamp() - start;
        return ((double)total / Stopwatch.Frequency, (double)optTicks / Stopwatch.Frequency);
    }
}
