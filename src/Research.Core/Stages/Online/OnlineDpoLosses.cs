using static TorchSharp.torch;

namespace Research.Stages.Online;

/// <summary>Which of a prompt's two samples the reward prefers, and whether it cannot tell them apart.</summary>
public readonly record struct Judgement(int Chosen, int Rejected, bool Tie);

/// <summary>
/// Online DPO: the judging of sample pairs and the offline preference loss on them, as pure functions tested against
/// hand-computed values. Rewards are per sample, each prompt's two adjacent.
/// </summary>
public static class OnlineDpoLosses
{
    /// <summary>Per prompt, the higher-rewarded sample is chosen; equal rewards are a tie (the first is then called chosen).</summary>
    public static Judgement[] Judge(IReadOnlyList<double> rewards)
    {
        if (rewards.Count % 2 != 0) throw new ArgumentException($"online DPO judges pairs: {rewards.Count} rewards are not whole pairs");
        var result = new Judgement[rewards.Count / 2];
        for (var i = 0; i < result.Length; i++)
        {
            var (a, b) = (rewards[2 * i], rewards[2 * i + 1]);
            if (!double.IsFinite(a) || !double.IsFinite(b)) throw new ArgumentException($"reward of prompt {i} is not finite ({a}, {b})");
            result[i] = b > a ? new Judgement(2 * i + 1, 2 * i, false) : new Judgement(2 * i, 2 * i + 1, a == b);
        }
        return result;
    }

    /// <summary>
    /// The summed loss of the judged pairs: each pair's offline preference loss (<see cref="PreferenceLosses.Pairs"/>,
    /// with summed log-probs of policy and reference) times its weight (0 for a tie, 1 otherwise), and the result behind it.
    /// </summary>
    public static (Tensor Sum, PreferenceResult Pairs) Loss(SequenceLogProbs chosen, SequenceLogProbs rejected, Tensor refChosen, Tensor refRejected,
        Tensor weights, PreferenceOptions options)
    {
        var pairs = PreferenceLosses.Pairs(chosen, rejected, refChosen, refRejected, options);
        return ((pairs.Losses * weights).sum(), pairs);
    }
}
