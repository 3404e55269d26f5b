using Research.Data;
using Research.Models;

namespace Research.Stages;

/// <summary>The phases of an align stage as plain functions: data → items, validation, the executor's run.</summary>
public static class Align
{
    /// <summary>
    /// Splits the records (seeded, pairs whole), tokenizes them (<see cref="PreferenceData.Tokenize"/>) and makes the rows of the
    /// mode: KTO / point-wise unpair paired TRAINING data (chosen label 1, rejected label 0); held-out pairs stay pairs.
    /// </summary>
    public static AlignData Prepare(PreferenceFile file, ITokenizer tokenizer, AlignOptions o, long seed, int maxPositions)
    {
        var maxLength = Math.Min(o.MaxLength, maxPositions);
        var maxPrompt = Math.Min(o.MaxPromptLength, maxLength - 1);
        var (train, val) = PreferenceData.Split(file.Records, o.ValidationFraction, seed);
        if (o.Mode is AlignMode.Kto or AlignMode.Pointwise && file.Paired)
            train = train.SelectMany(r => new[] { r with { Rejected = null, Label = 1 }, r with { Chosen = r.Rejected!, Rejected = null, Label = 0 } }).ToArray();
        var template = o.Template is { } name ? ChatTemplates.Resolve(name, tokenizer) : null;
        var tt = PreferenceData.Tokenize(train, tokenizer, maxLength, maxPrompt, template);
        var tv = PreferenceData.Tokenize(val, tokenizer, maxLength, maxPrompt, template);
        return new AlignData(Items(tt.Examples, train, maxLength), Items(tv.Examples, val, maxLength), file,
            tt.PromptsTruncated + tv.PromptsTruncated, tt.CompletionsTruncated + tv.CompletionsTruncated);
    }

    static AlignItem[] Items(IReadOnlyList<PreferenceExample> ex, IReadOnlyList<PreferenceRecord> records, int maxLength)
    {
        static AlignRow Row(int[] prompt, int[] completion, int max) =>
            new([.. prompt, .. completion.Length > max - prompt.Length ? completion[..(max - prompt.Length)] : completion], prompt.Length);
        return ex.Select((e, i) => new AlignItem(
            Row(e.Prompt, e.Chosen, maxLength),
            e.Rejected is { } r ? Row(e.Prompt, r, maxLength) : Row(e.Prompt, ex[(i + 1) % ex.Count].Chosen, maxLength),   // KTO's mismatched row
            e.Label, e.Paired, records[i].Prompt)).ToArray();
    }

    /// <summary>
    /// Held-out metrics: val_pref_accuracy = share of pairs with beta (dc − dr) &gt; 0 (the DPO implicit reward; for unpaired data,
    /// share whose d has the label's sign), val_logp_accuracy = share with log pi(chosen) &gt; log pi(rejected) (meaningful at step 0
    /// too, where every implicit reward is 0; val_ref_logp_accuracy is the starting model's), val_avg_logp_accuracy (per token, SimPO's reward), val_margin, val_kl_ref, and
    /// val_gen_length = mean tokens generated greedily for the first <c>Generations</c> held-out prompts. (Sampled answers are
    /// drawn once, by the stage after training: val_sample_length.)
    /// </summary>
    public static Func<CausalLM, IReadOnlyDictionary<string, double>> Validation(IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer, int batchRows) =>
        model =>
        {
            var m = new Dictionary<string, double>();
            if (val.Count == 0) return m;
            var (pc, lc) = ReferenceCache.SequenceSums(model, val.Select(i => i.First).ToArray(), batchRows);
            var dc = val.Select((it, i) => pc[i] - it.RefFirst).ToArray();
            m["val_kl_ref"] = dc.Sum() / Math.Max(1, lc.Sum());
            if (val[0].Paired)
            {
                var (pr, lr) = ReferenceCache.SequenceSums(model, val.Select(i => i.Second).ToArray(), batchRows);
                var h = val.Select((it, i) => dc[i] - (pr[i] - it.RefSecond)).ToArray();
                m["val_pref_accuracy"] = h.Average(x => o.Preference.Beta * x > 0 ? 1.0 : 0.0);
                m["val_margin"] = h.Average(x => o.Preference.Beta * x);
                m["val_logp_accuracy"] = val.Select((_, i) => pc[i] > pr[i] ? 1.0 : 0.0).Average();
                m["val_ref_logp_accuracy"] = val.Average(it => it.RefFirst > it.RefSecond ? 1.0 : 0.0);   // the starting model's, for comparison
                m["val_avg_logp_accuracy"] = val.Select((_, i) => pc[i] / Math.Max(1, lc[i]) > pr[i] / Math.Max(1, lr[i]) ? 1.0 : 0.0).Average();
                m["val_ref_avg_logp_accuracy"] = val.Average(it => it.RefFirst / Math.Max(1, it.First.CompletionLength) > it.RefSecond / Math.Max(1, it.Second.CompletionLength) ? 1.0 : 0.0);
            }
            else m["val_pref_accuracy"] = val.Select((it, i) => dc[i] > 0 == it.Label > 0.5 ? 1.0 : 0.0).Average();
            var gens = Generate(model, val, o, tokenizer);
            if (gens.Count > 0) m["val_gen_length"] = gens.Average(g => g.Tokens.Length);
            return m;
        };

    /// <summary>Greedy answers (EOS stops, not counted) to the first <c>Generations</c> held-out prompts.</summary>
    public static List<(AlignItem Item, int[] Tokens)> Generate(CausalLM model, IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer)
    {
        var result = new List<(AlignItem, int[])>();
        foreach (var it in val.Take(o.Generations))
        {
            var prompt = it.First.Tokens[..it.First.PromptLength];
            var room = Math.Min(o.GenerationTokens, model.Config.MaxPositionEmbeddings - prompt.Length);
            if (room < 1) continue;
            var tokens = Generation.Generate(model, prompt, SamplingOptions.Greedy(room) with { StopToken = tokenizer.EosId });
            result.Add((it, tokens.Length > 0 && tokens[^1] == tokenizer.EosId ? tokens[..^1] : tokens));
        }
        return result;
    }

    /// <summary>
    /// <c>SamplesPerPrompt</c> sampled answers (EOS stops, not counted) to each of the first <c>Generations</c> held-out prompts,
    /// with each answer's expected length given its path (<see cref="ResponseLength"/>); sample j of prompt i draws from its own
    /// generator seeded by (seed, i, j), whatever the model.
    /// </summary>
    public static List<SampledAnswers> Sample(CausalLM model, IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer, long seed)
    {
        var result = new List<SampledAnswers>();
        if (o.SamplesPerPrompt == 0) return result;
        foreach (var (it, i) in val.Take(o.Generations).Select((it, i) => (it, i)))
        {
            var room = Math.Min(o.GenerationTokens, model.Config.MaxPositionEmbeddings - it.First.PromptLength);
            if (room < 1) continue;
            result.Add(ResponseLength.Sample(model, it, o.SamplesPerPrompt, room, o.SampleTemperature, o.SampleTopP, tokenizer.EosId,
                j => (long)Rng.Derive(seed, 0x5A3E, i, j)));
        }
        return result;
    }

    /// <summary>
    /// A warning when a length-normalised objective (sigmoid_norm, SimPO) runs at a beta meant for summed log-ratios: its
    /// margins are per-token means, |y| times smaller than DPO's, so below beta 0.5 its loss hardly leaves log 2. Says which
    /// beta puts it on DPO's scale (beta x the mean completion tokens of the training items); null when nothing is amiss.
    /// </summary>
    public static string? BetaScaleHint(AlignOptions o, IReadOnlyList<AlignItem> train)
    {
        var normalised = o.Mode == AlignMode.SimPO ? "SimPO"
            : o.Mode == AlignMode.Paired && o.Preference.Losses.Any(l => l.Kind == PreferenceLoss.SigmoidNorm) ? "sigmoid_norm (LN-DPO)" : null;
        if (normalised is null || o.Preference.Beta >= 0.5 || train.Count == 0) return null;
        var meanTokens = train.Average(it => (it.First.CompletionLength + it.Second.CompletionLength) / 2.0);
        return $"align: warning: {normalised} compares per-token means, so beta {o.Preference.Beta:G4} puts its margins about {meanTokens:F0}x "
            + $"below DPO's at the same beta and its loss stays near log 2; beta {o.Preference.Beta * meanTokens:G3} (beta x the mean "
            + "completion tokens) puts it on DPO's scale (SimPO's paper uses 2 to 2.5)";
    }

    /// <summary>Mean tokens per sampled answer.</summary>
    public static double MeanLength(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Samples).Average(t => t.Length);

    /// <summary>Mean expected length of a sampled answer (the stop decisions integrated out along each path): the same expectation as <see cref="MeanLength"/>, less noisy.</summary>
    public static double MeanExpectedLength(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Expected).Average();

    /// <summary>Share of sampled answers that ran to the token cap without EOS.</summary>
    public static double CappedShare(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Capped).Average(c => c ? 1.0 : 0.0);
}
