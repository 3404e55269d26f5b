namespace Research.Stages.Reward;

/// <summary>
/// Which two candidates become a pair: among the candidates that can be a side (a non-empty completion: the align stage
/// skips empty ones), chosen = the highest score (the first on a tie), rejected = the lowest (the last on a tie); the pair is
/// kept when chosen − rejected &gt; the minimum gap (with gap 0, exactly when the scores differ). Fewer than two usable
/// candidates, or all tied within the gap, give no pair.
/// </summary>
public static class PairRule
{
    public static (int Chosen, int Rejected)? Choose(IReadOnlyList<double> scores, IReadOnlyList<bool> usable, double minGap)
    {
        int best = -1, worst = -1;
        for (var j = 0; j < scores.Count; j++)
        {
            if (!usable[j]) continue;
            if (best < 0 || scores[j] > scores[best]) best = j;
            if (worst < 0 || scores[j] <= scores[worst]) worst = j;
        }
        if (best < 0 || best == worst || !(scores[best] - scores[worst] > minGap)) return null;
        return (best, worst);
    }
}
