using Research.Data;

namespace Research.Stages.Online;

/// <summary>
/// A reward of a completion: a verifiable function of (prompt, completion, the prompt's answer). Its <see cref="Name"/>
/// and <see cref="Version"/> are part of the stage's key (a changed reward must bump its version so its stages re-run).
/// </summary>
public interface IReward
{
    string Name { get; }
    int Version { get; }
    double Score(string prompt, string completion, string? answer);
}

/// <summary>A reward written as a function, in F# or C#: <c>Reward.Of("starts-with-answer", 1, (p, c, a) => ...)</c>.</summary>
public sealed record Reward(string Name, int Version, Func<string, string, string?, double> Function) : IReward
{
    public double Score(string prompt, string completion, string? answer) => Function(prompt, completion, answer);

    public static Reward Of(string name, int version, Func<string, string, string?, double> function) => new(name, version, function);
}

/// <summary>One term of a stage's reward: a registered reward's name and its weight in the sum.</summary>
public sealed record RewardTerm(string Name, double Weight = 1.0);

/// <summary>
/// The rewards stages can name. Built in: "exact_answer" (1 when the completion's first line, trimmed, equals the
/// answer), "contains_answer" (1 when the completion contains it). Others are registered by name before the stage runs.
/// </summary>
public static class Rewards
{
    static readonly Dictionary<string, IReward> Known = new(StringComparer.Ordinal)
    {
        ["exact_answer"] = Reward.Of("exact_answer", 1, (_, c, a) => a is not null && FirstLine(c) == a.Trim() ? 1 : 0),
        ["contains_answer"] = Reward.Of("contains_answer", 1, (_, c, a) => a is not null && a.Length > 0 && c.Contains(a, StringComparison.Ordinal) ? 1 : 0),
    };
    static readonly Lock Gate = new();

    /// <summary>Makes <paramref name="reward"/> nameable by stages; a second registration of a name must be the same version.</summary>
    public static void Register(IReward reward)
    {
        lock (Gate)
        {
            if (Known.TryGetValue(reward.Name, out var old) && old.Version != reward.Version)
                throw new ArgumentException($"reward '{reward.Name}' is registered at version {old.Version}; register the new function under another name or restart");
            Known[reward.Name] = reward;
        }
    }

    /// <summary>The registered reward named <paramref name="name"/>, or an error listing the known ones.</summary>
    public static IReward Named(string name)
    {
        lock (Gate)
            return Known.TryGetValue(name, out var r) ? r
                : throw new ArgumentException($"no reward named '{name}' (known: {string.Join(", ", Known.Keys.Order())}); register it with Rewards.Register before the stage runs");
    }

    /// <summary>The weighted sum of the terms for one completion; a reward that throws or is not finite is an error naming the prompt.</summary>
    public static double Score(IReadOnlyList<RewardTerm> terms, string prompt, string completion, string? answer, int promptIndex) =>
        Score(Resolve(terms), prompt, completion, answer, promptIndex);

    /// <summary>The registered reward of each term, with its weight (an unknown name is an error listing the known ones).</summary>
    public static (IReward Reward, double Weight)[] Resolve(IReadOnlyList<RewardTerm> terms) => terms.Select(t => (Named(t.Name), t.Weight)).ToArray();

    /// <summary>The same weighted sum over reward values (e.g. a reward model a stage loaded itself, beside registered functions).</summary>
    public static double Score(IReadOnlyList<(IReward Reward, double Weight)> terms, string prompt, string completion, string? answer, int promptIndex)
    {
        var sum = 0.0;
        foreach (var (reward, weight) in terms)
        {
            double v;
            try { v = reward.Score(prompt, completion, answer); }
            catch (Exception e)
            {
                throw new InvalidOperationException($"reward '{reward.Name}' threw on prompt {promptIndex} ({Show(prompt)}): {e.Message}", e);
            }
            if (!double.IsFinite(v)) throw new InvalidOperationException($"reward '{reward.Name}' returned {v} on prompt {promptIndex} ({Show(prompt)}); a reward must be finite");
            sum += weight * v;
        }
        return sum;
    }

    /// <summary>"name@version*weight" per term: what the stage key holds of its rewards.</summary>
    public static string Fingerprint(IReadOnlyList<RewardTerm> terms) => Fingerprint(Resolve(terms));

    /// <summary>The same over reward values (a stage's loaded reward model among them); registered rewards are keyed by their own name.</summary>
    public static string Fingerprint(IReadOnlyList<(IReward Reward, double Weight)> terms) =>
        string.Join("+", terms.Select(t => $"{t.Reward.Name}@{t.Reward.Version}*{t.Weight:R}"));

    static string FirstLine(string s) => s.Split('\n')[0].Trim();
    static string Show(string s) => s.Length <= 40 ? $"'{s}'" : $"'{s[..40]}...'";
}
