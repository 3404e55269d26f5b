using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Research.Data;

/// <summary>Who speaks a chat turn (Hugging Face roles).</summary>
public enum ChatRole { System, User, Assistant }

/// <summary>One chat turn. <paramref name="Trained"/>: its tokens (and the end of its turn) are learned from.</summary>
public sealed record ChatMessage(ChatRole Role, string Content, bool Trained);

/// <summary>
/// One supervised example, as written in the file. Either a plain prompt/completion pair
/// (<see cref="Prompt"/> and <see cref="Completion"/> set), or a conversation (<see cref="Messages"/> set,
/// each turn saying whether it is trained). <see cref="Source"/> and <see cref="Line"/> name where it came from.
/// </summary>
public sealed record SftExample(string Source, int Line, string? Prompt, string? Completion, IReadOnlyList<ChatMessage>? Messages)
{
    public bool IsConversation => Messages is not null;
    public string Where => $"{Source}:{Line}";
}

/// <summary>
/// Reads supervised fine-tuning data in the Hugging Face (TRL) JSONL conventions, one object per line:
/// <list type="bullet">
/// <item><c>{"prompt": "...", "completion": "..."}</c>: plain text; the completion is trained.</item>
/// <item><c>{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}</c>: a conversation
/// rendered by a chat template; every assistant turn is trained.</item>
/// <item><c>{"prompt": [messages], "completion": [messages] or "..."}</c>: a conversational prompt; only the
/// completion (assistant turns) is trained, assistant turns inside the prompt are context.</item>
/// </list>
/// Blank lines are skipped; other fields are ignored. Every error names the file and line.
/// </summary>
public static class SftData
{
    public static IReadOnlyList<SftExample> Read(string path) =>
        JsonLine.ReadFile(path, (text, file, line) => Parse(text, file, line),
            "SFT data not found (expected a .jsonl file of prompt/completion or messages objects)",
            "no examples (the file is empty); write one JSON object per line with \"prompt\"/\"completion\" or \"messages\"");

    /// <summary>One JSONL line; <paramref name="source"/> and <paramref name="line"/> only name it in errors.</summary>
    public static SftExample Parse(string json, string source, int line)
    {
        var at = $"{source}:{line}";
        using (var doc = JsonLine.ParseObject(json, at, "\"prompt\"/\"completion\" or \"messages\""))
        {
            var root = doc.RootElement;
            if (root.TryGetProperty("messages", out var messages))
            {
                if (root.TryGetProperty("prompt", out _) || root.TryGetProperty("completion", out _))
                    throw new CorpusException($"{at}: has both \"messages\" and \"prompt\"/\"completion\"; use one format per line");
                return new SftExample(source, line, null, null, Messages(messages, "messages", at, trained: m => m == ChatRole.Assistant));
            }
            var hasPrompt = root.TryGetProperty("prompt", out var prompt);
            var hasCompletion = root.TryGetProperty("completion", out var completion);
            if (!hasPrompt && !hasCompletion)
                throw new CorpusException($"{at}: missing field: expected \"messages\" (a conversation) or \"prompt\" and \"completion\"");
            if (!hasPrompt) throw new CorpusException($"{at}: missing field \"prompt\" (it has a \"completion\")");
            if (!hasCompletion) throw new CorpusException($"{at}: missing field \"completion\" (it has a \"prompt\")");
            if (prompt.ValueKind == JsonValueKind.String)
            {
                if (completion.ValueKind != JsonValueKind.String)
                    throw new CorpusException($"{at}: \"completion\" must be a string when \"prompt\" is a string, got {Kind(completion)}");
                return new SftExample(source, line, JsonLine.Text(prompt, at), JsonLine.Text(completion, at), null);
            }
            if (prompt.ValueKind != JsonValueKind.Array)
                throw new CorpusException($"{at}: \"prompt\" must be a string or a list of messages, got {Kind(prompt)}");
            var turns = new List<ChatMessage>(Messages(prompt, "prompt", at, trained: _ => false));
            if (completion.ValueKind == JsonValueKind.String)
                turns.Add(new ChatMessage(ChatRole.Assistant, JsonLine.Text(completion, at), true));
            else if (completion.ValueKind == JsonValueKind.Array)
            {
                var done = Messages(completion, "completion", at, trained: _ => true);
                if (done.FirstOrDefault(m => m.Role != ChatRole.Assistant) is { } bad)
                    throw new CorpusException($"{at}: \"completion\" messages must be assistant turns, found role \"{Name(bad.Role)}\"");
                turns.AddRange(done);
            }
            else throw new CorpusException($"{at}: \"completion\" must be a string or a list of messages, got {Kind(completion)}");
            return new SftExample(source, line, null, null, turns);
        }
    }

    /// <summary>Lower-case hex SHA-256 of the file's bytes: what makes two runs see the same data.</summary>
    public static string FileFingerprint(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    /// <summary>Splits by example: a seeded shuffle picks round(fraction × count) held-out examples (at least 1 when fraction &gt; 0); both parts keep file order.</summary>
    public static (IReadOnlyList<SftExample> Train, IReadOnlyList<SftExample> Validation) Split(IReadOnlyList<SftExample> examples, double fraction, long seed)
    {
        if (!(fraction >= 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "validation fraction must be in [0, 1)");
        var n = examples.Count;
        if (fraction == 0) return (examples, []);
        if (n < 2) throw new CorpusException($"{examples[0].Source}: {n} example(s) cannot be split into train and validation; add examples or use validation fraction 0");
        var nVal = Math.Clamp((int)Math.Round(fraction * n, MidpointRounding.AwayFromZero), 1, n - 1);
        var order = new Rng(Rng.Derive(seed, 0x5F7)).Permutation(n);
        var isVal = new bool[n];
        for (var i = 0; i < nVal; i++) isVal[order[i]] = true;
        return (examples.Where((_, i) => !isVal[i]).ToArray(), examples.Where((_, i) => isVal[i]).ToArray());
    }

    internal static ChatMessage[] Messages(JsonElement list, string field, string at, Func<ChatRole, bool> trained)
    {
        if (list.ValueKind != JsonValueKind.Array)
            throw new CorpusException($"{at}: \"{field}\" must be a list of {{\"role\", \"content\"}} objects, got {Kind(list)}");
        var result = new List<ChatMessage>();
        var i = 0;
        foreach (var m in list.EnumerateArray())
        {
            var what = $"{at}: \"{field}\"[{i++}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw new CorpusException($"{what} must be an object with \"role\" and \"content\", got {Kind(m)}");
            if (!m.TryGetProperty("role", out var role)) throw new CorpusException($"{what}: missing field \"role\"");
            if (!m.TryGetProperty("content", out var content)) throw new CorpusException($"{what}: missing field \"content\"");
            if (role.ValueKind != JsonValueKind.String) throw new CorpusException($"{what}: \"role\" must be a string, got {Kind(role)}");
            if (content.ValueKind != JsonValueKind.String) throw new CorpusException($"{what}: \"content\" must be a string, got {Kind(content)}");
            var r = JsonLine.Text(role, at) switch
            {
                "system" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                var other => throw new CorpusException($"{what}: unknown role \"{other}\" (expected system, user or assistant)"),
            };
            result.Add(new ChatMessage(r, JsonLine.Text(content, at), trained(r)));
        }
        if (result.Count == 0) throw new CorpusException($"{at}: \"{field}\" is an empty list");
        return result.ToArray();
    }

    internal static string Name(ChatRole role) => role.ToString().ToLowerInvariant();

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Array => "a list",
        JsonValueKind.Object => "an object",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}

/// <summary>What to do with an example longer than the sequence length.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SftTruncation>))]
public enum SftTruncation
{
    /// <summary>Cut context tokens from the left (after BOS, before the first trained token), keeping every
    /// trained token; drop the example when its trained part alone does not fit. The default.</summary>
    KeepCompletion,
    /// <summary>Keep the start, cut the end (TRL's "keep_start"); drop the example if no trained token is left.</summary>
    KeepStart,
    /// <summary>Drop every example that is too long.</summary>
    Drop,
}

/// <summary>Examples rendered and fitted to the sequence length, with counts for the report.</summary>
/// <summary>An SFT file read, fingerprinted, split and tokenized: what tune and distill train and validate on.</summary>
public sealed record SftSplit(string Path, string Sha256, int ExamplesRead, SftPrepared Train, SftPrepared Validation);

public sealed record SftPrepared(IReadOnlyList<SftTokens> Sequences, IReadOnlyList<SftExample> Examples, int Read, int Truncated, int Dropped)
{
    public long TrainedTokens => Sequences.Sum(s => (long)s.TrainedTargets);
}

/// <summary>From examples to fitted token sequences, and best-fit-decreasing packing of them.</summary>
public static class SftPreparation
{
    /// <summary>
    /// Reads <paramref name="path"/>, splits off a seeded validation fraction and prepares both parts with
    /// <paramref name="template"/> for sequences of at most <paramref name="blockLength"/> + 1 tokens. An empty
    /// training part is a loud error naming the file.
    /// </summary>
    public static SftSplit Load(string path, double validationFraction, long seed, ChatTemplate template, ITokenizer tokenizer, int blockLength, SftTruncation policy)
    {
        var sha = SftData.FileFingerprint(path);
        var examples = SftData.Read(path);
        var (trainEx, valEx) = SftData.Split(examples, validationFraction, seed);
        var train = Prepare(trainEx, template, tokenizer, blockLength + 1, policy);
        var val = Prepare(valEx, template, tokenizer, blockLength + 1, policy);
        if (train.Sequences.Count == 0)
            throw new CorpusException($"{path}: no training example fits block_length {blockLength} ({train.Dropped} dropped by truncation {policy}); raise block_length");
        return new SftSplit(path, sha, examples.Count, train, val);
    }

    /// <summary>
    /// Renders every example and fits it to <paramref name="maxTokens"/> tokens by <paramref name="policy"/>.
    /// An example that trains on no token at all (e.g. a conversation without an assistant turn) is an error naming
    /// its file and line: silently learning nothing from it is what users of other SFT tools keep running into.
    /// </summary>
    public static SftPrepared Prepare(IReadOnlyList<SftExample> examples, ChatTemplate template, ITokenizer tokenizer, int maxTokens, SftTruncation policy)
    {
        if (maxTokens < 2) throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "an example needs at least 2 tokens");
        var kept = new List<SftTokens>();
        var keptExamples = new List<SftExample>();
        int truncated = 0, dropped = 0;
        foreach (var ex in examples)
        {
            var t = template.Render(ex, tokenizer);
            if (t.TrainedTargets == 0)
                throw new CorpusException($"{ex.Where}: every token of this example is masked (no assistant or completion token to train on); " +
                                          "give it an assistant turn or a non-empty completion, or remove it");
            var fitted = Fit(t, maxTokens, policy);
            if (fitted is null) { dropped++; continue; }
            if (fitted.Length < t.Length) truncated++;
            kept.Add(fitted);
            keptExamples.Add(ex);
        }
        return new SftPrepared(kept, keptExamples, examples.Count, truncated, dropped);
    }

    /// <summary>The sequence cut to at most <paramref name="maxTokens"/> by <paramref name="policy"/>; null = drop it.</summary>
    public static SftTokens? Fit(SftTokens t, int maxTokens, SftTruncation policy)
    {
        if (t.Length <= maxTokens) return t;
        var excess = t.Length - maxTokens;
        switch (policy)
        {
            case SftTruncation.KeepCompletion:
            {
                var firstTrained = Array.IndexOf(t.Trained, true);
                if (excess > firstTrained - 1) return null;               // keep BOS and at least one context token before the answer
                int[] ids = [t.Ids[0], .. t.Ids[(1 + excess)..]];
                bool[] mask = [t.Trained[0], .. t.Trained[(1 + excess)..]];
                return new SftTokens(ids, mask);
            }
            case SftTruncation.KeepStart:
            {
                var cut = new SftTokens(t.Ids[..maxTokens], t.Trained[..maxTokens]);
                return cut.TrainedTargets > 0 ? cut : null;
            }
            default:
                return null;
        }
    }

    /// <summary>
    /// Best-fit decreasing: items sorted by length, longest first (ties by index), each put into the open bin with the
    /// least room that still fits it, or a new bin. Returns, per bin, the item indices in the order they were placed.
    /// </summary>
    public static int[][] BestFitDecreasing(IReadOnlyList<int> lengths, int capacity)
    {
        var bins = new List<List<int>>();
        var open = new SortedSet<(int Room, int Bin)>();
        foreach (var i in Enumerable.Range(0, lengths.Count).OrderByDescending(i => lengths[i]).ThenBy(i => i))
        {
            var len = lengths[i];
            if (len > capacity) throw new ArgumentException($"item {i} of length {len} exceeds the bin capacity {capacity}");
            if (len < 1) throw new ArgumentException($"item {i} has length {len}; lengths must be positive");
            var best = open.GetViewBetween((len, -1), (int.MaxValue, int.MaxValue)).Min;   // default (0, 0) when none fits
            if (best.Room >= len)
            {
                open.Remove(best);
                bins[best.Bin].Add(i);
                open.Add((best.Room - len, best.Bin));
            }
            else
            {
                bins.Add([i]);
                open.Add((capacity - len, bins.Count - 1));
            }
        }
        return bins.Select(b => b.ToArray()).ToArray();
    }
}
