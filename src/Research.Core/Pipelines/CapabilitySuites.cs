using Research.Data;
using Research.Data.Synthetic;
using Research.Eval;
using Research.Models;
using Research.Stages;

namespace Research.Pipelines;

/// <summary>
/// A suite that also reads the checkpoint the evaluated stage started from (its first parent), e.g. as the reference
/// model of an implicit reward. The executor passes null for a stage without parents.
/// </summary>
public interface IReferenceSuite : ISuite
{
    IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer, string? parentCheckpoint);
}

/// <summary>
/// Greedy generation scored by exact match (lm-evaluation-harness's generate_until + exact_match): each example's prompt
/// (messages or prompt/completion JSONL, rendered by a chat template) is answered greedily until EOS or
/// <paramref name="maxNewTokens"/>; the answer matches when, stripped of surrounding whitespace, it equals the reference.
/// {"exact_match", "count"}. Each example is generated alone, so there is no batch size to change the score.
/// </summary>
public sealed class ReasoningSuite(string name, string path, string template = "plain", int maxNewTokens = 12) : ISuite
{
    public string Name => name;
    public string Fingerprint => $"exact-match|{SftData.FileFingerprint(path)}|{template}|{maxNewTokens}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        var chat = ChatTemplates.Resolve(template, tokenizer);
        var examples = SftData.Read(path);
        var matched = 0;
        foreach (var ex in examples)
        {
            var (prompt, answer) = chat.PromptAndAnswer(ex, tokenizer);
            if (Capability.Generate(model, tokenizer, prompt, maxNewTokens) is { } text && text.Trim() == answer.Trim()) matched++;
        }
        return new Dictionary<string, double> { ["exact_match"] = (double)matched / examples.Count, ["count"] = examples.Count };
    }
}

/// <summary>
/// Instruction following checked by rule (<see cref="FormatRules"/>): each item's instruction is sent as a user turn,
/// answered greedily; it counts when the model ends its answer (EOS within <paramref name="maxNewTokens"/>) and the
/// answer passes the rule. {"acc", "acc_&lt;constraint&gt;" for each constraint present, "stopped", "count"}.
/// </summary>
public sealed class InstructionFollowingSuite(string name, string path, string template = "plain", int maxNewTokens = 40) : ISuite
{
    public string Name => name;
    public string Fingerprint => $"format|{SftData.FileFingerprint(path)}|{template}|{maxNewTokens}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        var chat = ChatTemplates.Resolve(template, tokenizer);
        var items = World.ReadFormatItems(path);
        var passed = new Dictionary<string, (int Ok, int N)>();
        int ok = 0, stopped = 0;
        foreach (var it in items)
        {
            var ex = new SftExample(path, 0, null, null, [new ChatMessage(ChatRole.User, it.Prompt, false), new ChatMessage(ChatRole.Assistant, "", true)]);
            var text = Capability.Generate(model, tokenizer, chat.PromptAndAnswer(ex, tokenizer).Prompt, maxNewTokens);
            var good = text is not null && FormatRules.Check(it.Constraint, it.Key, text);
            if (text is not null) stopped++;
            if (good) ok++;
            var (o, n) = passed.GetValueOrDefault(it.Constraint);
            passed[it.Constraint] = (o + (good ? 1 : 0), n + 1);
        }
        var m = new Dictionary<string, double> { ["acc"] = (double)ok / items.Count, ["stopped"] = (double)stopped / items.Count, ["count"] = items.Count };
        foreach (var (c, (o, n)) in passed) m[$"acc_{c}"] = (double)o / n;
        return m;
    }
}

/// <summary>
/// Preference accuracy on held-out pairs (prompt/chosen/rejected JSONL). "acc": share of pairs with
/// log π(chosen | prompt) &gt; log π(rejected | prompt) (summed over completion tokens + EOS); "margin": their mean
/// difference. With a reference (the parent stage's checkpoint), "reward_acc": share with a positive DPO implicit reward
/// margin, (log π − log π_ref)(chosen) − (log π − log π_ref)(rejected) &gt; 0. Rows are right-padded in batches of
/// <paramref name="batchRows"/>; the model is causal, so the batch size does not change a row's log-probability.
/// </summary>
public sealed class PreferenceAccuracySuite(string name, string path, int batchRows = 16) : IReferenceSuite
{
    public string Name => name;
    public string Fingerprint => $"preference|{SftData.FileFingerprint(path)}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer) => Evaluate(model, tokenizer, null);

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer, string? parentCheckpoint)
    {
        var file = PreferenceData.Read(path);
        if (!file.Paired) throw new CorpusException($"{path}: preference accuracy needs prompt/chosen/rejected pairs");
        var max = model.Config.MaxPositionEmbeddings;
        var ex = PreferenceData.Tokenize(file.Records, tokenizer, max, Math.Max(1, max / 2)).Examples;
        var chosen = ex.Select(e => new AlignRow([.. e.Prompt, .. e.Chosen], e.Prompt.Length)).ToArray();
        var rejected = ex.Select(e => new AlignRow([.. e.Prompt, .. e.Rejected!], e.Prompt.Length)).ToArray();
        var (pc, pr) = Sums(model, chosen, rejected);
        var m = new Dictionary<string, double>
        {
            ["acc"] = pc.Zip(pr).Average(x => x.First > x.Second ? 1.0 : 0.0),
            ["margin"] = pc.Zip(pr).Average(x => (double)x.First - x.Second),
            ["count"] = pc.Length,
        };
        if (parentCheckpoint is not null)
        {
            var (reference, _) = Checkpoint.Load(parentCheckpoint, model.EmbeddingWeight.device);
            using (reference)
            {
                var (rc, rr) = Sums(reference, chosen, rejected);
                m["reward_acc"] = Enumerable.Range(0, pc.Length).Average(i => (pc[i] - rc[i]) - (pr[i] - rr[i]) > 0 ? 1.0 : 0.0);
            }
        }
        return m;
    }

    (float[] Chosen, float[] Rejected) Sums(CausalLM model, AlignRow[] chosen, AlignRow[] rejected) =>
        (ReferenceCache.SequenceSums(model, chosen, batchRows).Sum, ReferenceCache.SequenceSums(model, rejected, batchRows).Sum);
}

/// <summary>General retention: general multiple choice (acc, acc_norm) and held-out general perplexity in one suite.</summary>
public sealed class GeneralRetentionSuite(string name, McSuite knowledge, PerplexitySuite perplexity) : ISuite
{
    public string Name => name;
    public string Fingerprint => $"retention|{knowledge.Fingerprint}|{perplexity.Fingerprint}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        var m = new Dictionary<string, double>(knowledge.Evaluate(model, tokenizer));
        foreach (var (k, v) in perplexity.Evaluate(model, tokenizer)) m[k] = v;
        return m;
    }
}

/// <summary>The capability suites of a world, and the greedy answer they share.</summary>
public static class Capability
{
    /// <summary>Cloze template: the question is the start of a sentence and each choice its continuation.</summary>
    public const string ClozeTemplate = "{question}";

    /// <summary>
    /// The six suites on a world written to <paramref name="files"/>: domain_knowledge (cloze MC on test companies, few-shot
    /// from train companies), domain_task (news sentiment MC), reasoning (exact match), instruction_following (rules),
    /// preference (held-out pairs) and general_retention (general MC + perplexity on <paramref name="general"/>'s held-out split).
    /// <paramref name="chatTemplate"/> renders the prompts of the two generation suites ("plain", "chatml", or "model": the
    /// model's own chat_template).
    /// </summary>
    public static IReadOnlyList<ISuite> Suites(WorldFiles files, DataSource general, long seed, int fewShot = 0, int batchSize = 8, string chatTemplate = "plain") =>
    [
        new McSuite("domain_knowledge", files.DomainKnowledge, fewShot, fewShot > 0 ? files.DomainKnowledgeFewShot : null, seed, batchSize, ClozeTemplate),
        new McSuite("domain_task", files.DomainTask, fewShot, null, seed, batchSize, ClozeTemplate),
        new ReasoningSuite("reasoning", files.Reasoning, chatTemplate),
        new InstructionFollowingSuite("instruction_following", files.InstructionFollowing, chatTemplate),
        new PreferenceAccuracySuite("preference", files.HeldOutPreferences, 2 * batchSize),
        new GeneralRetentionSuite("general_retention", new McSuite("general_knowledge", files.GeneralKnowledge, fewShot, null, seed, batchSize, ClozeTemplate),
            new PerplexitySuite("general", general, 0.04, seed, 128)),
    ];

    /// <summary>Greedy continuation of <paramref name="prompt"/>: its text when the model ended it with EOS within <paramref name="maxNewTokens"/>, else null.</summary>
    public static string? Generate(CausalLM model, ITokenizer tokenizer, int[] prompt, int maxNewTokens)
    {
        var room = Math.Min(maxNewTokens, model.Config.MaxPositionEmbeddings - prompt.Length);
        if (room <= 0) return null;
        var output = Generation.Generate(model, prompt, SamplingOptions.Greedy(room) with { StopToken = tokenizer.EosId });
        return output.Length > 0 && output[^1] == tokenizer.EosId ? tokenizer.Decode(output[..^1]) : null;
    }
}
