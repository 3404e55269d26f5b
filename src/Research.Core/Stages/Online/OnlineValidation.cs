using Research.Data;
using Research.Models;

namespace Research.Stages.Online;

/// <summary>What the on-policy stages share around training: the held-out prompts, the context check and val_reward.</summary>
public static class OnlineValidation
{
    /// <summary>Share of prompts held out for val_reward (seeded), at most 32; none below 5 prompts.</summary>
    public const double Fraction = 0.2;

    /// <summary>The seeded split of the prompts into (train, validation).</summary>
    public static (PromptExample[] Train, PromptExample[] Validation) Split(IReadOnlyList<PromptExample> prompts, long seed)
    {
        var order = new Rng(Rng.Derive(seed, 17)).Permutation(prompts.Count);
        var held = prompts.Count < 5 ? 0 : Math.Min(32, (int)(prompts.Count * Fraction));
        return (order.Skip(held).Select(i => prompts[i]).ToArray(), order.Take(held).Select(i => prompts[i]).ToArray());
    }

    /// <summary>Every prompt, with <paramref name="extra"/> tokens before the rollout and the new tokens, fits the context; else the line is named.</summary>
    public static void EnsureFits(IReadOnlyList<PromptExample> prompts, ITokenizer tokenizer, CausalLM model, int maxNewTokens, Func<PromptExample, int>? extra = null)
    {
        foreach (var p in prompts)
            if (GrpoObjective.Ids(tokenizer, p.Prompt).Length + (extra?.Invoke(p) ?? 0) + maxNewTokens > model.Config.MaxPositionEmbeddings)
                throw new ArgumentException($"{p.Source}:{p.Line}: the prompt{(extra is null ? "" : " and its demonstration")} with {maxNewTokens} new tokens exceed the model's context of {model.Config.MaxPositionEmbeddings}; shorten it or lower max_new_tokens");
    }

    /// <summary>Mean reward of the seeded samples of every held-out prompt (the same seeds before and after training).</summary>
    public static double MeanReward(CausalLM model, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, IReadOnlyList<RewardTerm> reward, RolloutOptions sampling, long seed) =>
        MeanReward(model, tokenizer, prompts, Rewards.Resolve(reward), sampling, seed);

    /// <summary>The same with the reward's terms as values.</summary>
    public static double MeanReward(CausalLM model, ITokenizer tokenizer, IReadOnlyList<PromptExample> prompts, IReadOnlyList<(IReward Reward, double Weight)> reward, RolloutOptions sampling, long seed)
    {
        var rollouts = Rollouts.Sample(model, prompts.Select(p => (IReadOnlyList<int>)GrpoObjective.Ids(tokenizer, p.Prompt)).ToArray(),
            sampling with { Seed = unchecked((long)Rng.Derive(seed, 23)) }, tokenizer);
        return rollouts.Average(r => Rewards.Score(reward, prompts[r.Prompt].Prompt, tokenizer.Decode(r.Tokens.Where(t => t != tokenizer.EosId)), prompts[r.Prompt].Answer, r.Prompt));
    }
}
