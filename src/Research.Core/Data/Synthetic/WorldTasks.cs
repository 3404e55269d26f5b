using Research.Eval;
using static Research.Data.Synthetic.WorldDocuments;
using static Research.Data.Synthetic.WorldEntities;

namespace Research.Data.Synthetic;

/// <summary>One chat turn as written in a "messages" JSONL line (Hugging Face roles: "user", "assistant").</summary>
public sealed record Turn(string Role, string Content);

/// <summary>A preference pair; <paramref name="Kind"/> says how the rejected answer is bad: "wrong", "verbose" or "off_format".</summary>
public sealed record PreferencePair(string Prompt, string Chosen, string Rejected, string Kind);

/// <summary>An instruction with a format constraint checked by rule (<see cref="FormatRules"/>); the answer is not scored.</summary>
public sealed record FormatItem(string Prompt, string Constraint, string? Key);

/// <summary>A numeric question over reported figures, scored by exact match of the generated answer.</summary>
public sealed record ReasoningItem(string Prompt, string Answer);

/// <summary>
/// What a world asks and answers: instructions, preferences and evaluation items. Everything that carries a
/// company's facts into training (instructions, preferences, few-shot pools) uses TRAIN companies only; the knowledge,
/// task, reasoning and format suites ask about TEST companies, whose facts appear in the documents alone.
/// </summary>
public static class WorldTasks
{
    /// <summary>The questions on one company, each with its concise correct answer and a format constraint (or none).</summary>
    public static IEnumerable<(string Prompt, string Answer, string? Constraint, string? Key)> Questions(Company c)
    {
        yield return ($"What is the sector of {c.Name}?", c.Sector, null, null);
        yield return ($"What is the home city of {c.Name}?", c.City, null, null);
        yield return ($"Who is the chief executive of {c.Name}?", c.Chief, null, null);
        yield return ($"What is the sector of {c.Name}? Answer in one word.", c.Sector, FormatRules.OneWord, null);
        yield return ($"What is the home city of {c.Name}? Answer in uppercase.", c.City.ToUpperInvariant(), FormatRules.Uppercase, null);
        yield return ($"Who is the chief executive of {c.Name}? Answer in a sentence.", ChiefFact(c), FormatRules.EndsWithPeriod, null);
        yield return ($"What is the sector of {c.Name}? Answer in JSON with key \"sector\".", $"{{\"sector\": \"{c.Sector}\"}}", FormatRules.Json, "sector");
    }

    /// <summary>Prompts stay under ~95 characters, so a whole example fits the tiny models' 128 positions with the chat template.</summary>
    public static string SentimentPrompt(string newsLine) => $"Sentiment: {newsLine}";

    public static ReasoningItem Reasoning(Company c, int q)
    {
        var (a, b) = (c.Revenue[q], c.Revenue[q + 1]);
        var (lo, hi, second) = a <= b ? (a, b, q + 1) : (b, a, q);
        return new ReasoningItem($"{c.Name} had revenue {a} in Q{q + 1} and {b} in Q{q + 2}. How much higher was Q{second + 1}?", (hi - lo).ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Conversational instruction data on train companies: questions, format constraints, sentiment, reasoning.</summary>
    public static IReadOnlyList<Turn[]> Instructions(WorldEntities w, Rng r)
    {
        var result = new List<Turn[]>();
        foreach (var c in w.TrainCompanies)
        {
            var qs = Questions(c).ToArray();
            foreach (var (p, a, _, _) in qs) result.Add([new("user", p), new("assistant", a)]);
            foreach (var e in Events.Where(_ => r.NextInt(2) == 0))
                result.Add([new("user", SentimentPrompt(NewsLine(c, e, 1 + r.NextInt(15)))), new("assistant", Sentiment(e))]);
            for (var q = 0; q < 3; q++)
            {
                var it = Reasoning(c, q);
                result.Add([new("user", it.Prompt), new("assistant", it.Answer)]);
            }
        }
        return result;
    }

    /// <summary>The prompt of a preference pair: the user turn rendered as the "plain" chat template renders it, up to the assistant header.</summary>
    public static string ChatPrompt(string user) => ChatTemplates.Plain.User.Prefix + user + ChatTemplates.Plain.User.Suffix + ChatTemplates.Plain.Assistant.Prefix;

    /// <summary>
    /// One pair per question of each company: chosen = the correct concise answer; rejected, in turn, a wrong fact,
    /// the right fact buried in hedging (verbose), or the right fact in the wrong format (off format).
    /// </summary>
    public static IReadOnlyList<PreferencePair> Preferences(IEnumerable<Company> companies, WorldEntities w, Rng r)
    {
        var pairs = new List<PreferencePair>();
        var others = w.TrainCompanies.ToArray();
        foreach (var c in companies)
            foreach (var (p, a, constraint, _) in Questions(c))
            {
                var kind = r.NextInt(constraint is null ? 2 : 3);
                string rejected;
                if (kind == 0)
                {
                    var o = others.Where(x => x.Sector != c.Sector && x.City != c.City && x.Chief != c.Chief).Select(x => x).ToArray();
                    var d = o.Length > 0 ? o[r.NextInt(o.Length)] : c with { Sector = Sectors.First(s => s != c.Sector), City = "Nowhere", Chief = "Nobody Known" };
                    rejected = a.Replace(c.Sector, d.Sector).Replace(c.City.ToUpperInvariant(), d.City.ToUpperInvariant()).Replace(c.City, d.City).Replace(c.Chief, d.Chief);
                }
                else if (kind == 1)
                    rejected = $"Well, that is a good question and I am not fully sure, but as far as I know the answer might be {a}, though you should check.";
                else
                    rejected = constraint switch
                    {
                        FormatRules.OneWord => $"It works in {c.Sector} and other things",
                        FormatRules.Uppercase => c.City.ToLowerInvariant(),
                        FormatRules.EndsWithPeriod => c.Chief,
                        _ => c.Sector,
                    };
                pairs.Add(new PreferencePair(ChatPrompt(p), a, rejected, kind switch { 0 => "wrong", 1 => "verbose", _ => "off_format" }));
            }
        return pairs;
    }

    /// <summary>Domain knowledge as cloze multiple choice: a fact sentence without its value, the value among 4 of its kind.</summary>
    public static IReadOnlyList<McItem> Knowledge(IEnumerable<Company> companies, WorldEntities w, Rng r, string source)
    {
        var items = new List<McItem>();
        var asked = companies.ToArray();
        var known = asked.Concat(w.TrainCompanies).Distinct().ToArray();   // distractors never name a test company's facts outside its own items
        var cities = known.Select(c => c.City).Distinct().ToArray();
        var chiefs = known.Select(c => c.Chief).ToArray();
        foreach (var c in asked)
        {
            items.Add(Cloze(SectorFact(c), c.Sector, Sectors, r, source, items.Count + 1));
            items.Add(Cloze(CityFact(c), c.City, cities.Length >= 4 ? cities : [.. cities, .. w.Places.Select(p => p.Name)], r, source, items.Count + 1));
            items.Add(Cloze(ChiefFact(c), c.Chief, chiefs, r, source, items.Count + 1));
            items.Add(Cloze(TickerFact(c), c.Ticker, known.Select(x => x.Ticker).ToArray(), r, source, items.Count + 1));
        }
        return items;
    }

    /// <summary>General knowledge (retention) as cloze multiple choice over the encyclopedia's facts.</summary>
    public static IReadOnlyList<McItem> GeneralKnowledge(WorldEntities w, Rng r)
    {
        var items = new List<McItem>();
        foreach (var a in w.Animals)
        {
            items.Add(Cloze(HabitatFact(a), a.Habitat, Habitats, r, "general_knowledge", items.Count + 1));
            items.Add(Cloze(FoodFact(a), a.Food, Foods, r, "general_knowledge", items.Count + 1));
        }
        foreach (var p in w.Places) items.Add(Cloze(FeatureFact(p), p.Feature, Features, r, "general_knowledge", items.Count + 1));
        foreach (var p in w.People) items.Add(Cloze($"{p.Name} was a {p.Occupation}.", p.Occupation, Occupations, r, "general_knowledge", items.Count + 1));
        return items;
    }

    /// <summary>Sentiment of news lines as cloze multiple choice ("... The news was" positive / negative).</summary>
    public static IReadOnlyList<McItem> SentimentItems(IEnumerable<Company> companies, Rng r, string source)
    {
        var items = new List<McItem>();
        foreach (var c in companies)
            foreach (var e in Events)
                if (r.NextInt(2) == 0)
                    items.Add(new McItem($"{NewsLine(c, e, 1 + r.NextInt(15))} The news was", ["positive", "negative"], e.Positive ? 0 : 1, source, items.Count + 1));
        return items;
    }

    public static IReadOnlyList<FormatItem> FormatItems(IEnumerable<Company> companies) =>
        companies.SelectMany(c => Questions(c).Where(q => q.Constraint is not null).Select(q => new FormatItem(q.Prompt, q.Constraint!, q.Key))).ToArray();

    public static IReadOnlyList<ReasoningItem> ReasoningItems(IEnumerable<Company> companies) =>
        companies.SelectMany(c => Enumerable.Range(0, 3).Select(q => Reasoning(c, q))).ToArray();

    /// <summary>
    /// A fact sentence "… value." as a cloze: the question is the sentence up to the value, the choices the value and 3
    /// distinct distractors of the same kind, in a seeded order.
    /// </summary>
    static McItem Cloze(string fact, string value, IReadOnlyList<string> pool, Rng r, string source, int line)
    {
        var at = fact.LastIndexOf(value, StringComparison.Ordinal);
        var question = fact[..at].TrimEnd();
        var distractors = pool.Where(x => x != value).Distinct().ToArray();
        r.Shuffle(distractors);
        var choices = distractors.Take(3).Append(value).ToArray();
        r.Shuffle(choices);
        return new McItem(question, choices, Array.IndexOf(choices, value), source, line);
    }
}
