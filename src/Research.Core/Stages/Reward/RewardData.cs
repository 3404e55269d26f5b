using System.Text.Json;
using Research.Data;

namespace Research.Stages.Reward;

/// <summary>A tokenized preference pair: prompt + chosen and prompt + rejected, each ending where the head pools; the margin (0 when the line has none).</summary>
public sealed record RewardPair(int[] Chosen, int[] Rejected, double Margin, string Source, int Line);

/// <summary>Training and held-out pairs and what reading them counted.</summary>
public sealed record RewardPairs(IReadOnlyList<RewardPair> Train, IReadOnlyList<RewardPair> Validation, PreferenceFile File, int PromptsTruncated, int CompletionsTruncated);

/// <summary>
/// The align stage's paired preference JSONL (prompt/chosen/rejected, <see cref="PreferenceData"/>) read for a reward model,
/// with an optional numeric <c>"margin"</c> per line (TRL's RewardTrainer column). Rows are tokenized as align tokenizes them
/// without a template (BOS prompt, completion EOS; long prompts left-truncated, then completions cut), and split with the same
/// seeded record-level split, so a reward model and a DPO run on one file hold out the same pairs.
/// </summary>
public static class RewardData
{
    public static RewardPairs Prepare(string path, ITokenizer tokenizer, int maxLength, int maxPromptLength, double validationFraction, long seed)
    {
        var file = PreferenceData.Read(path);
        if (!file.Paired) throw new CorpusException($"{path}: a reward model trains on pairs (prompt/chosen/rejected); this file holds prompt/completion/label records");
        var margins = Margins(path);
        var (train, val) = PreferenceData.Split(file.Records, validationFraction, seed);
        var maxPrompt = Math.Min(maxPromptLength, maxLength - 1);
        var tt = PreferenceData.Tokenize(train, tokenizer, maxLength, maxPrompt);
        var tv = PreferenceData.Tokenize(val, tokenizer, maxLength, maxPrompt);
        RewardPair[] Pairs(TokenizedPreferences t) => t.Examples.Select(e =>
            new RewardPair([.. e.Prompt, .. e.Chosen], [.. e.Prompt, .. e.Rejected!], margins.GetValueOrDefault(e.Line), e.Source, e.Line)).ToArray();
        return new RewardPairs(Pairs(tt), Pairs(tv), file, tt.PromptsTruncated + tv.PromptsTruncated, tt.CompletionsTruncated + tv.CompletionsTruncated);
    }

    /// <summary>The "margin" of each line that has one, by line number; a margin that is not a finite number is an error naming the line.</summary>
    public static IReadOnlyDictionary<int, double> Margins(string path)
    {
        var margins = new Dictionary<int, double>();
        foreach (var (text, line) in Utf8Text.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(text)) continue;
            using var doc = JsonLine.ParseObject(text, $"{path}:{line}", "prompt/chosen/rejected (and optionally margin)");
            if (!doc.RootElement.TryGetProperty("margin", out var m)) continue;
            if (m.ValueKind != JsonValueKind.Number || !double.IsFinite(m.GetDouble()))
                throw new CorpusException($"{path}:{line}: \"margin\" must be a finite number (got {m.GetRawText()}); leave it out for 0");
            margins[line] = m.GetDouble();
        }
        return margins;
    }

    /// <summary>The rows one prompt and completion make for the head, tokenized exactly as training rows are.</summary>
    public static int[] Row(ITokenizer tokenizer, string prompt, string completion, int maxLength, int maxPromptLength)
    {
        var record = new PreferenceRecord(prompt, completion, null, 1.0, "reward", 0);
        var e = PreferenceData.Tokenize([record], tokenizer, maxLength, Math.Min(maxPromptLength, maxLength - 1)).Examples[0];
        return [.. e.Prompt, .. e.Chosen];
    }
}
