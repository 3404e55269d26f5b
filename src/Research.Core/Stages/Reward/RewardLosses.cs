using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Stages.Reward;

/// <summary>
/// The reward model's pairwise loss (Bradley–Terry, as in InstructGPT and TRL's RewardTrainer): for a pair with scalar
/// rewards r_c (chosen) and r_r (rejected) and an optional margin m, l = −log σ(r_c − r_r − m). With m = 0 this is the
/// negative log-likelihood of the Bradley–Terry model P(chosen ≻ rejected) = σ(r_c − r_r); a margin asks the chosen
/// reward to lead by at least m before the loss flattens (Llama 2's margin term).
/// </summary>
public static class RewardLosses
{
    /// <summary>Per-pair losses (B) of rewards (B) and margins (B, or null for 0).</summary>
    public static Tensor BradleyTerry(Tensor chosen, Tensor rejected, Tensor? margin = null)
    {
        if (!chosen.shape.SequenceEqual(rejected.shape) || chosen.dim() != 1)
            throw new ArgumentException($"reward loss: chosen [{string.Join(", ", chosen.shape)}] and rejected [{string.Join(", ", rejected.shape)}] must both be (B) rewards");
        if (margin is not null && !margin.shape.SequenceEqual(chosen.shape))
            throw new ArgumentException($"reward loss: margin [{string.Join(", ", margin.shape)}] must be (B) like the rewards [{chosen.shape[0]}]");
        var h = chosen - rejected;
        if (margin is not null) h = h - margin;
        return -F.logsigmoid(h);
    }

    /// <summary>Share of pairs whose chosen reward is strictly above the rejected one (a tie counts as wrong).</summary>
    public static double Accuracy(IReadOnlyList<double> chosen, IReadOnlyList<double> rejected) =>
        chosen.Count == 0 ? double.NaN : chosen.Select((c, i) => c > rejected[i] ? 1.0 : 0.0).Average();
}
