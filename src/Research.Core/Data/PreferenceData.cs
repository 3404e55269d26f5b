using System.Text;
using System.Text.Json;

namespace Research.Data;

/// <summary>
/// One preference record as read. Paired: <see cref="Rejected"/> is set and <see cref="Label"/> is 1.
/// Unpaired: <see cref="Chosen"/> holds the completion, <see cref="Rejected"/> is null and <see cref="Label"/>
/// is 1 (desirable), 0 (undesirable) or a score in [0, 1] (point-wise).
/// </summary>
public sealed record PreferenceRecord(string Prompt, string Chosen, string? Rejected, double Label, string Source, int Line)
{
    public bool Paired => Rejected is not null;
    /// <summary>The prompt as the file's messages (null for a string prompt): what a chat template renders.</summary>
    public IReadOnlyList<ChatMessage>? PromptMessages { get; init; }

    /// <summary>By value, the messages included (a list compares by reference otherwise).</summary>
    public bool Equals(PreferenceRecord? other) =>
        other is not null && Prompt == other.Prompt && Chosen == other.Chosen && Rejected == other.Rejected && Label.Equals(other.Label)
        && Source == other.Source && Line == other.Line
        && (PromptMessages is null ? other.PromptMessages is null : other.PromptMessages is not null && PromptMessages.SequenceEqual(other.PromptMessages));

    public override int GetHashCode() => HashCode.Combine(Prompt, Chosen, Rejected, Label, Source, Line);
}

/// <summary>What reading a preference file kept and what it skipped (file:line of the first few skips).</summary>
public sealed record PreferenceFile(IReadOnlyList<PreferenceRecord> Records, int LinesRead, int Skipped, IReadOnlyList<string> SkippedAt)
{
    /// <summary>True when the records are prompt/chosen/rejected pairs; false for prompt/completion/label.</summary>
    public bool Paired => Records.Count > 0 && Records[0].Paired;
}

/// <summary>A tokenized record: <c>Prompt</c> starts with BOS; each completion ends with EOS unless it was cut.</summary>
public sealed record PreferenceExample(int[] Prompt, int[] Chosen, int[]? Rejected, double Label, string Source, int Line)
{
    public bool Paired => Rejected is not null;
}

/// <summary>Tokenized records with the truncation counts.</summary>
public sealed record TokenizedPreferences(IReadOnlyList<PreferenceExample> Examples, int PromptsTruncated, int CompletionsTruncated);

/// <summary>
/// Preference data in JSONL, one object per line (blank lines skipped), in one of two shapes for the whole file:
/// <list type="bullet">
/// <item>paired: <c>{"prompt": P, "chosen": C, "rejected": R}</c> (DPO family, SimPO, ORPO; KTO and point-wise unpair them);</item>
/// <item>unpaired: <c>{"prompt": P, "completion": C, "label": L}</c>, L a bool (KTO) or a number in [0, 1] (point-wise).</item>
/// </list>
/// P, C, R are strings, or messages arrays <c>[{"role": "user", "content": "..."}]</c> rendered with the minimal template
/// <c>&lt;|role|&gt;\n{content}\n</c> per message; a messages prompt ends with <c>&lt;|assistant|&gt;\n</c> (the generation
/// prompt). A messages completion must be one assistant message; its content is the completion.
/// Errors (malformed JSON, a missing field, a wrong type, a label outside [0, 1], mixed shapes) name file and line.
/// A record whose completion (chosen, rejected or completion) is empty or only whitespace is SKIPPED and counted
/// (<see cref="PreferenceFile.Skipped"/>), since one empty line should not stop a large file; a file left with none is an error.
/// </summary>
public static class PreferenceData
{
    const int SkipSamples = 5;

    /// <summary>Reads a JSONL file (see the class comment).</summary>
    public static PreferenceFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new CorpusException($"{path}: preference data not found (expected a .jsonl file)");
        return Parse(Lines(path), path);
    }

    /// <summary>
    /// The file's lines as documents (Source = path, Line = 1-based), for a stage data input:
    /// <c>DataSource.FromDocuments(name, () =&gt; PreferenceData.Lines(path))</c>. The input's fingerprint then covers the
    /// content, so edited data re-runs the stage (a DataPath option alone is keyed by the path only).
    /// </summary>
    public static IReadOnlyList<Document> Lines(string path)
    {
        if (!File.Exists(path)) throw new CorpusException($"{path}: preference data not found (expected a .jsonl file)");
        return Utf8Text.ReadLines(path).Select(l => new Document(l.Text, path, l.Line)).ToArray();
    }

    /// <summary>Each document is one JSONL line (its Source and Line name it in errors): for data that arrives as a corpus.</summary>
    public static PreferenceFile Parse(IEnumerable<Document> lines, string name)
    {
        var records = new List<PreferenceRecord>();
        var skippedAt = new List<string>();
        int read = 0, skipped = 0;
        bool? paired = null;
        foreach (var line in lines)
        {
            if (string.IsNullOrWhiteSpace(line.Text)) continue;
            read++;
            var where = $"{line.Source}:{line.Line}";
            using (var json = JsonLine.ParseObject(line.Text, where, "prompt/chosen/rejected or prompt/completion/label"))
            {
                var root = json.RootElement;
                var isPaired = root.TryGetProperty("chosen", out _) || root.TryGetProperty("rejected", out _);
                if (!isPaired && !root.TryGetProperty("completion", out _))
                    throw new CorpusException($"{where}: no \"chosen\"/\"rejected\" (paired) or \"completion\"/\"label\" (unpaired) field");
                if (paired is { } p && p != isPaired)
                    throw new CorpusException($"{where}: this line is {(isPaired ? "paired" : "unpaired")} but earlier lines are {(p ? "paired" : "unpaired")}; one file holds one shape");
                paired = isPaired;
                var prompt = Text(root, "prompt", where, isPrompt: true);
                PreferenceRecord record;
                if (isPaired)
                    record = new PreferenceRecord(prompt, Text(root, "chosen", where, false), Text(root, "rejected", where, false), 1.0, line.Source, line.Line);
                else
                    record = new PreferenceRecord(prompt, Text(root, "completion", where, false), null, Label(root, where), line.Source, line.Line);
                if (root.GetProperty("prompt").ValueKind == JsonValueKind.Array)
                    record = record with { PromptMessages = SftData.Messages(root.GetProperty("prompt"), "prompt", where, _ => false) };
                if (string.IsNullOrWhiteSpace(record.Chosen) || (record.Rejected is { } r && string.IsNullOrWhiteSpace(r)))
                {
                    skipped++;
                    if (skippedAt.Count < SkipSamples) skippedAt.Add($"{where}: empty completion");
                    continue;
                }
                records.Add(record);
            }
        }
        if (records.Count == 0)
            throw new CorpusException($"{name}: no usable preference record ({read} lines read, {skipped} skipped for an empty completion)");
        return new PreferenceFile(records, read, skipped, skippedAt);
    }

    static string Text(JsonElement root, string field, string where, bool isPrompt)
    {
        if (!root.TryGetProperty(field, out var v))
            throw new CorpusException($"{where}: missing field \"{field}\"");
        return v.ValueKind switch
        {
            JsonValueKind.String => JsonLine.Text(v, where),
            JsonValueKind.Array => isPrompt ? RenderPrompt(v, field, where) : RenderCompletion(v, field, where),
            _ => throw new CorpusException($"{where}: field \"{field}\" must be a string or a messages array, got {v.ValueKind.ToString().ToLowerInvariant()}"),
        };
    }

    static (string Role, string Content) Message(JsonElement m, string field, int i, string where)
    {
        if (m.ValueKind != JsonValueKind.Object
            || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
            || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
            throw new CorpusException($"{where}: \"{field}\"[{i}] must be an object with string fields \"role\" and \"content\"");
        return (JsonLine.Text(role, where), JsonLine.Text(content, where));
    }

    /// <summary>Messages as <c>&lt;|role|&gt;\n{content}\n</c> each, then <c>&lt;|assistant|&gt;\n</c>.</summary>
    static string RenderPrompt(JsonElement messages, string field, string where)
    {
        var sb = new StringBuilder();
        var i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            var (role, content) = Message(m, field, i++, where);
            sb.Append("<|").Append(role).Append("|>\n").Append(content).Append('\n');
        }
        return sb.Append("<|assistant|>\n").ToString();
    }

    static string RenderCompletion(JsonElement messages, string field, string where)
    {
        if (messages.GetArrayLength() != 1)
            throw new CorpusException($"{where}: \"{field}\" as messages must hold exactly one assistant message (got {messages.GetArrayLength()})");
        var (role, content) = Message(messages[0], field, 0, where);
        if (role != "assistant")
            throw new CorpusException($"{where}: \"{field}\"[0] has role \"{role}\"; a completion is an \"assistant\" message");
        return content;
    }

    static double Label(JsonElement root, string where)
    {
        if (!root.TryGetProperty("label", out var v)) throw new CorpusException($"{where}: missing field \"label\"");
        switch (v.ValueKind)
        {
            case JsonValueKind.True: return 1.0;
            case JsonValueKind.False: return 0.0;
            case JsonValueKind.Number:
                var x = v.GetDouble();
                if (x is >= 0 and <= 1) return x;
                throw new CorpusException($"{where}: \"label\" {x} is outside [0, 1]");
            default:
                throw new CorpusException($"{where}: field \"label\" must be a bool or a number in [0, 1], got {v.ValueKind.ToString().ToLowerInvariant()}");
        }
    }

    /// <summary>
    /// Seeded split at record level (a pair stays whole): round(fraction × n) records held out, at least 1 and at most n − 1
    /// when fraction &gt; 0; both parts keep file order.
    /// </summary>
    public static (IReadOnlyList<T> Train, IReadOnlyList<T> Validation) Split<T>(IReadOnlyList<T> records, double fraction, long seed)
    {
        if (!(fraction >= 0 && fraction < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "validation fraction must be in [0, 1)");
        var n = records.Count;
        if (fraction == 0) return (records, []);
        if (n < 2) throw new CorpusException($"{n} preference record(s) cannot be split into train and validation; add records or use validation fraction 0");
        var nVal = Math.Clamp((int)Math.Round(fraction * n, MidpointRounding.AwayFromZero), 1, n - 1);
        var order = new Rng(Rng.Derive(seed, 0xA119)).Permutation(n);
        var isVal = new bool[n];
        for (var i = 0; i < nVal; i++) isVal[order[i]] = true;
        var train = new List<T>(n - nVal);
        var val = new List<T>(nVal);
        for (var i = 0; i < n; i++) (isVal[i] ? val : train).Add(records[i]);
        return (train, val);
    }

    /// <summary>
    /// Tokenizes: without a template, prompt = [BOS] + Encode(prompt), completion = Encode(completion) + [EOS]. With a chat
    /// template (e.g. the model's own, <see cref="ChatTemplates.Resolve"/>), a record is rendered as tune renders an example:
    /// a messages prompt + one assistant turn as a conversation through the template, a string prompt as prompt/completion text
    /// (the tokenizer's own BOS convention, no chat markup, as TRL treats non-conversational data); then split where the
    /// trained tokens start: the prompt is everything before (ending with the
    /// generation prompt), the completion is the trained span (the answer and the template's end of turn). Chosen and rejected
    /// must then render the same prompt (a template that changes the prompt by the answer is refused, naming the line).
    /// When prompt + completion exceeds
    /// <paramref name="maxLength"/> tokens, the prompt is LEFT-truncated to <paramref name="maxPromptLength"/> (BOS kept, the
    /// end of the prompt kept, as TRL's keep_end) and counted; if still too long the completion is cut on the right (counted).
    /// </summary>
    public static TokenizedPreferences Tokenize(IReadOnlyList<PreferenceRecord> records, ITokenizer tokenizer, int maxLength, int maxPromptLength, ChatTemplate? template = null)
    {
        if (maxPromptLength < 1 || maxPromptLength >= maxLength)
            throw new ArgumentException($"preference data: max_prompt_length ({maxPromptLength}) must be in [1, max_length ({maxLength}))");
        int prompts = 0, completions = 0;
        var examples = new List<PreferenceExample>(records.Count);
        foreach (var r in records)
        {
            int[] prompt, chosen;
            int[]? rejected = null;
            if (template is null)
            {
                prompt = Bos(tokenizer, r.Prompt);
                chosen = Eos(tokenizer, r.Chosen);
                if (r.Rejected is not null) rejected = Eos(tokenizer, r.Rejected);
            }
            else
            {
                (prompt, chosen) = Render(template, tokenizer, r, r.Chosen);
                if (r.Rejected is not null)
                {
                    (var p2, rejected) = Render(template, tokenizer, r, r.Rejected);
                    if (!p2.AsSpan().SequenceEqual(prompt))
                        throw new CorpusException($"{r.Source}:{r.Line}: the chat template \"{template.Name}\" renders a different prompt before the chosen and the rejected answer; preference pairs need one prompt");
                }
            }
            var longest = Math.Max(chosen.Length, rejected?.Length ?? 0);
            if (prompt.Length + longest > maxLength && prompt.Length > maxPromptLength)
            {
                prompt = LeftTruncate(prompt, maxPromptLength);
                prompts++;
            }
            var room = maxLength - prompt.Length;
            if (longest > room)
            {
                completions++;
                chosen = chosen.Length > room ? chosen[..room] : chosen;
                if (rejected is not null && rejected.Length > room) rejected = rejected[..room];
            }
            examples.Add(new PreferenceExample(prompt, chosen, rejected, r.Label, r.Source, r.Line));
        }
        return new TokenizedPreferences(examples, prompts, completions);
    }

    /// <summary>Keeps the first token (BOS) and the last <c>max − 1</c>.</summary>
    public static int[] LeftTruncate(int[] prompt, int max) =>
        prompt.Length <= max ? prompt : [prompt[0], .. prompt[^(max - 1)..]];

    /// <summary>The record's prompt turns and one trained assistant turn, rendered; split at the first trained token.</summary>
    static (int[] Prompt, int[] Completion) Render(ChatTemplate template, ITokenizer tokenizer, PreferenceRecord r, string completion)
    {
        var example = r.PromptMessages is { } turns
            ? new SftExample(r.Source, r.Line, null, null, [.. turns, new ChatMessage(ChatRole.Assistant, completion, true)])
            : new SftExample(r.Source, r.Line, r.Prompt, completion, null);
        var tokens = template.Render(example, tokenizer);
        var first = Array.IndexOf(tokens.Trained, true);
        var last = Array.LastIndexOf(tokens.Trained, true);
        if (first < 1)
            throw new CorpusException($"{r.Source}:{r.Line}: the chat template \"{template.Name}\" renders {(first < 0 ? "no answer tokens" : "no prompt before the answer")}");
        return (tokens.Ids[..first], tokens.Ids[first..(last + 1)]);
    }

    static int[] Bos(ITokenizer t, string text) => [t.BosId, .. t.Encode(text)];
    static int[] Eos(ITokenizer t, string text) => [.. t.Encode(text), t.EosId];
}
