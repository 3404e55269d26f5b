using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Research.Eval;
using Research.Runs;

namespace Research.Data.Synthetic;

/// <summary>Where <see cref="World.Write"/> put each file of a world (JSONL in the Hugging Face conventions).</summary>
public sealed record WorldFiles(string Directory)
{
    string At(string name) => Path.Combine(Directory, name);
    /// <summary>{"text"}: encyclopedia articles.</summary>
    public string General => At("general.jsonl");
    /// <summary>{"text"}: company reports and news.</summary>
    public string Domain => At("domain.jsonl");
    /// <summary>{"text"}: each domain document followed by questions and answers on it.</summary>
    public string ReadingComprehension => At("reading_comprehension.jsonl");
    /// <summary>{"text"}: unlabeled task text (news lines, figures) for task-adaptive pretraining.</summary>
    public string Tapt => At("tapt.jsonl");
    /// <summary>{"messages"}: conversational instructions on train companies.</summary>
    public string Instructions => At("instructions.jsonl");
    /// <summary>{"prompt", "chosen", "rejected"}: preference pairs on train companies.</summary>
    public string Preferences => At("preferences.jsonl");
    /// <summary>{"prompt", "completion", "label"}: unpaired desirable (true) and undesirable (false) answers.</summary>
    public string Unpaired => At("unpaired.jsonl");
    /// <summary>{"train": [...], "test": [...]}: the company split.</summary>
    public string Entities => At("entities.json");
    public string EvalDirectory => At("eval");
    /// <summary>{"question", "choices", "answer"}: cloze facts of test companies.</summary>
    public string DomainKnowledge => At("eval/domain_knowledge.jsonl");
    /// <summary>The same questions on train companies: the few-shot pool of the knowledge suite.</summary>
    public string DomainKnowledgeFewShot => At("eval/domain_knowledge_fewshot.jsonl");
    /// <summary>{"question", "choices", "answer"}: the sentiment of news lines on test companies.</summary>
    public string DomainTask => At("eval/domain_task.jsonl");
    /// <summary>{"question", "choices", "answer"}: cloze facts of the encyclopedia.</summary>
    public string GeneralKnowledge => At("eval/general_knowledge.jsonl");
    /// <summary>{"messages"}: numeric questions with the exact answer as the assistant turn.</summary>
    public string Reasoning => At("eval/reasoning.jsonl");
    /// <summary>{"prompt", "constraint", "key"}: instructions whose format is checked by rule.</summary>
    public string InstructionFollowing => At("eval/instruction_following.jsonl");
    /// <summary>{"prompt", "chosen", "rejected"}: held-out pairs on test companies.</summary>
    public string HeldOutPreferences => At("eval/preferences.jsonl");
}

/// <summary>
/// The embedded default world: a seeded finance domain (fictional companies, tickers, sectors, cities, chief executives,
/// quarterly revenue, events) and a general encyclopedia (animals, towns, people), and everything made from them:
/// documents, reading-comprehension variants, TAPT text, instructions, preferences, unpaired labels and evaluation items.
/// One size parameter: <c>size</c> general documents, half as many domain documents, size / 150 companies (9 to 48).
/// No download, no third-party text; the same (size, seed) gives byte-identical files.
/// </summary>
public sealed class World
{
    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = false };

    public int Size { get; }
    public int Seed { get; }
    public WorldEntities Entities { get; }
    public IReadOnlyList<Document> General { get; }
    public IReadOnlyList<Document> Domain { get; }
    public IReadOnlyList<Document> ReadingComprehension { get; }
    public IReadOnlyList<Document> Tapt { get; }
    public IReadOnlyList<Turn[]> Instructions { get; }
    public IReadOnlyList<PreferencePair> Preferences { get; }
    public IReadOnlyList<PreferencePair> HeldOutPreferences { get; }
    public IReadOnlyList<McItem> DomainKnowledge { get; }
    public IReadOnlyList<McItem> DomainKnowledgeFewShot { get; }
    public IReadOnlyList<McItem> DomainTask { get; }
    public IReadOnlyList<McItem> GeneralKnowledge { get; }
    public IReadOnlyList<ReasoningItem> Reasoning { get; }
    public IReadOnlyList<FormatItem> InstructionFollowing { get; }

    /// <summary>Each product draws from its own stream (Rng.Derive(seed, k)), so one product's size never shifts another's text.</summary>
    public World(int size, int seed)
    {
        if (size < 10) throw new ArgumentException($"world: size must be at least 10 general documents (got {size})");
        Size = size;
        Seed = seed;
        Rng R(int k) => new(Rng.Derive(seed, 0x3071D, k));
        Entities = WorldEntities.Create(size, R(0));
        General = WorldDocuments.General(Entities, size, R(1));
        var domain = WorldDocuments.Domain(Entities, Math.Max(1, size / 2), R(2));
        Domain = domain.Select(d => d.Doc).ToArray();
        ReadingComprehension = WorldDocuments.ReadingComprehension(domain);
        Tapt = WorldDocuments.Tapt(Entities, R(3));
        Instructions = WorldTasks.Instructions(Entities, R(4));
        Preferences = WorldTasks.Preferences(Entities.TrainCompanies, Entities, R(5));
        HeldOutPreferences = WorldTasks.Preferences(Entities.TestCompanies, Entities, R(6));
        DomainKnowledge = WorldTasks.Knowledge(Entities.TestCompanies, Entities, R(7), "domain_knowledge");
        DomainKnowledgeFewShot = WorldTasks.Knowledge(Entities.TrainCompanies, Entities, R(8), "domain_knowledge_fewshot");
        DomainTask = WorldTasks.SentimentItems(Entities.TestCompanies, R(9), "domain_task");
        GeneralKnowledge = WorldTasks.GeneralKnowledge(Entities, R(10));
        Reasoning = WorldTasks.ReasoningItems(Entities.TestCompanies);
        InstructionFollowing = WorldTasks.FormatItems(Entities.TestCompanies);
    }

    /// <summary>Writes every file under <paramref name="directory"/> (each atomically); same size and seed, same bytes.</summary>
    public WorldFiles Write(string directory)
    {
        var f = new WorldFiles(Path.GetFullPath(directory));
        Directory.CreateDirectory(f.EvalDirectory);
        static object Msgs(IEnumerable<Turn> turns) => turns.Select(t => new { role = t.Role, content = t.Content }).ToArray();
        Lines(f.General, General.Select(d => new { text = d.Text }));
        Lines(f.Domain, Domain.Select(d => new { text = d.Text }));
        Lines(f.ReadingComprehension, ReadingComprehension.Select(d => new { text = d.Text }));
        Lines(f.Tapt, Tapt.Select(d => new { text = d.Text }));
        Lines(f.Instructions, Instructions.Select(m => new { messages = Msgs(m) }));
        Lines(f.Preferences, Preferences.Select(p => new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected }));
        Lines(f.Unpaired, Preferences.SelectMany(p => new object[]
        {
            new { prompt = p.Prompt, completion = p.Chosen, label = true },
            new { prompt = p.Prompt, completion = p.Rejected, label = false },
        }));
        AtomicFile.WriteAllText(f.Entities, JsonSerializer.Serialize(new
        {
            size = Size, seed = Seed,
            train = Entities.TrainCompanies.Select(c => c.Name).ToArray(),
            test = Entities.TestCompanies.Select(c => c.Name).ToArray(),
        }, Json) + "\n");
        McLines(f.DomainKnowledge, DomainKnowledge);
        McLines(f.DomainKnowledgeFewShot, DomainKnowledgeFewShot);
        McLines(f.DomainTask, DomainTask);
        McLines(f.GeneralKnowledge, GeneralKnowledge);
        Lines(f.Reasoning, Reasoning.Select(r => new { messages = Msgs([new("user", r.Prompt), new("assistant", r.Answer)]) }));
        Lines(f.InstructionFollowing, InstructionFollowing.Select(i => new { prompt = i.Prompt, constraint = i.Constraint, key = i.Key }));
        Lines(f.HeldOutPreferences, HeldOutPreferences.Select(p => new { prompt = p.Prompt, chosen = p.Chosen, rejected = p.Rejected }));
        return f;
    }

    static void McLines(string path, IEnumerable<McItem> items) =>
        Lines(path, items.Select(i => new { question = i.Question, choices = i.Choices, answer = i.Answer }));

    static void Lines<T>(string path, IEnumerable<T> rows)
    {
        var sb = new StringBuilder();
        foreach (var r in rows) sb.Append(JsonSerializer.Serialize(r, r!.GetType(), Json)).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString());
    }

    /// <summary>Reads the instruction-following items of a file written by <see cref="Write"/> (or by hand: prompt, constraint, key).</summary>
    public static IReadOnlyList<FormatItem> ReadFormatItems(string path) =>
        JsonLine.ReadFile(path, (text, file, line) =>
        {
            var at = $"{file}:{line}";
            using var doc = JsonLine.ParseObject(text, at, "\"prompt\", \"constraint\" and (for json) \"key\"");
            var root = doc.RootElement;
            string Str(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                : throw new CorpusException($"{at}: missing string field \"{name}\"");
            var constraint = Str("constraint");
            if (!FormatRules.All.Contains(constraint))
                throw new CorpusException($"{at}: unknown constraint \"{constraint}\" (known: {string.Join(", ", FormatRules.All)})");
            var key = root.TryGetProperty("key", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString() : null;
            if (constraint == FormatRules.Json && key is null) throw new CorpusException($"{at}: constraint \"json\" needs a string field \"key\"");
            return new FormatItem(Str("prompt"), constraint, key);
        }, "instruction-following data not found (expected a .jsonl file of prompt/constraint/key objects)",
           "no items (the file is empty)");
}
