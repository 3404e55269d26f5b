using System.Text;
using static Research.Data.Synthetic.WorldEntities;

namespace Research.Data.Synthetic;

/// <summary>
/// The texts of a world: encyclopedia articles (general), company reports and news (domain), reading-comprehension
/// variants of the domain documents (a document followed by questions on it, as in "Adapting Large Language Models via
/// Reading Comprehension", Cheng et al. 2024) and unlabeled task text for task-adaptive pretraining. Every fact sentence
/// has one fixed wording, which the knowledge suites complete as a cloze.
/// </summary>
public static class WorldDocuments
{
    static readonly string[] Seasons = ["spring", "summer", "autumn", "winter"];

    // fact sentences: the suites' cloze questions are these sentences without their last word(s)
    public static string SectorFact(Company c) => $"The sector of {c.Name} is {c.Sector}.";
    public static string CityFact(Company c) => $"The home city of {c.Name} is {c.City}.";
    public static string ChiefFact(Company c) => $"The chief executive of {c.Name} is {c.Chief}.";
    public static string TickerFact(Company c) => $"The ticker of {c.Name} is {c.Ticker}.";
    public static string HabitatFact(Animal a) => $"The {a.Name} lives in the {a.Habitat}.";
    public static string FoodFact(Animal a) => $"The {a.Name} eats {a.Food}.";
    public static string FeatureFact(Place p) => $"{p.Name} is known for {p.Feature}.";
    public static string OccupationFact(Person p) => $"{p.Name} was a {p.Occupation} born in {p.Birthplace}.";

    /// <summary>A news line: the event, the share move it causes (up when positive), and the percentage.</summary>
    public static string NewsLine(Company c, CompanyEvent e, int percent) =>
        $"{c.Name} {e.Text}. Shares of {c.Ticker} {(e.Positive ? "rose" : "fell")} {percent} percent.";

    public static string Sentiment(CompanyEvent e) => e.Positive ? "positive" : "negative";

    public static IReadOnlyList<Document> General(WorldEntities w, int count, Rng r)
    {
        var docs = new Document[count];
        for (var i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            switch (r.NextInt(3))
            {
                case 0:
                    var a = Pick(r, w.Animals);
                    sb.Append(HabitatFact(a)).Append(' ').Append(FoodFact(a)).Append(' ');
                    for (int k = 0, n = 1 + r.NextInt(3); k < n; k++)
                        sb.Append(Pick(r, [
                            $"In {Pick(r, Seasons)} the {a.Name} looks for {a.Food} near {Pick(r, w.Places).Name}. ",
                            $"A young {a.Name} stays with its mother until its first {Pick(r, Seasons)}. ",
                            $"The {a.Name} is quiet and careful, and it rarely leaves the {a.Habitat}. ",
                            $"An adult {a.Name} is about {10 + r.NextInt(90)} centimetres long. ",
                        ]));
                    break;
                case 1:
                    var p = Pick(r, w.Places);
                    sb.Append($"{p.Name} is a town in the {p.Region}. ").Append(FeatureFact(p)).Append(' ');
                    for (int k = 0, n = 1 + r.NextInt(3); k < n; k++)
                        sb.Append(Pick(r, [
                            $"Every {Pick(r, Seasons)} the town holds a fair beside {p.Feature}. ",
                            $"The road from {p.Name} to {Pick(r, w.Places).Name} passes {Pick(r, Features)}. ",
                            $"About {100 + r.NextInt(9900)} people live in {p.Name}. ",
                            $"Children in {p.Name} learn the names of the birds of the {Pick(r, Habitats)}. ",
                        ]));
                    break;
                default:
                    var q = Pick(r, w.People);
                    sb.Append(OccupationFact(q)).Append(' ');
                    for (int k = 0, n = 1 + r.NextInt(3); k < n; k++)
                        sb.Append(Pick(r, [
                            $"As a {q.Occupation}, {q.Name} worked in {Pick(r, w.Places).Name} for {2 + r.NextInt(30)} years. ",
                            $"{q.Name} liked to walk to {Pick(r, Features)} in the {Pick(r, Seasons)}. ",
                            $"People in {q.Birthplace} still speak of {q.Name}. ",
                        ]));
                    break;
            }
            docs[i] = new Document(sb.ToString().TrimEnd(), "general", i + 1);
        }
        return docs;
    }

    /// <summary>Reports and news, each about one company and opening with its four facts (sector, city, chief, ticker).</summary>
    public static IReadOnlyList<(Document Doc, Company Company)> Domain(WorldEntities w, int count, Rng r)
    {
        var docs = new (Document, Company)[count];
        for (var i = 0; i < count; i++)
        {
            var c = w.Companies[r.NextInt(w.Companies.Count)];
            var sb = new StringBuilder();
            var news = r.NextInt(2) == 0;
            sb.Append(news ? $"News about {c.Name}. " : $"Quarterly report of {c.Name}. ");
            // the facts in a seeded order, so each value must be recalled from the company's name, not from the fact before it
            string[] facts = [SectorFact(c), CityFact(c), ChiefFact(c), TickerFact(c)];
            r.Shuffle(facts);
            foreach (var f in facts) sb.Append(f).Append(' ');
            if (news)
            {
                var e = Pick(r, Events);
                sb.Append(NewsLine(c, e, 1 + r.NextInt(15))).Append($" The news was {Sentiment(e)}.");
            }
            else
            {
                var q = r.NextInt(3);
                var (a, b) = (c.Revenue[q], c.Revenue[q + 1]);
                sb.Append($"Revenue in Q{q + 1} was {a} million. Revenue in Q{q + 2} was {b} million. ");
                sb.Append(a == b ? "Revenue was flat." : $"Revenue {(b > a ? "rose" : "fell")} by {Math.Abs(b - a)} million.");
            }
            docs[i] = (new Document(sb.ToString(), "domain", i + 1), c);
        }
        return docs;
    }

    /// <summary>Each domain document followed by questions on it and their answers (reading-comprehension variant).</summary>
    public static IReadOnlyList<Document> ReadingComprehension(IReadOnlyList<(Document Doc, Company Company)> domain) =>
        domain.Select((x, i) =>
        {
            var (d, c) = x;
            var qa = new StringBuilder(d.Text).Append("\n\n");
            qa.Append($"Question: What is the sector of {c.Name}?\nAnswer: {c.Sector}\n");
            qa.Append($"Question: What is the home city of {c.Name}?\nAnswer: {c.City}\n");
            qa.Append($"Question: Who is the chief executive of {c.Name}?\nAnswer: {c.Chief}");
            return new Document(qa.ToString(), "reading_comprehension", i + 1);
        }).ToArray();

    /// <summary>Unlabeled task text (news lines and revenue figures, no answers): the input of task-adaptive pretraining.</summary>
    public static IReadOnlyList<Document> Tapt(WorldEntities w, Rng r)
    {
        var docs = new List<Document>();
        foreach (var c in w.Companies)
        {
            foreach (var e in Events.Where(_ => r.NextInt(2) == 0))
                docs.Add(new Document(NewsLine(c, e, 1 + r.NextInt(15)), "tapt", docs.Count + 1));
            docs.Add(new Document($"Revenue of {c.Name} was {c.Revenue[0]} million in Q1 and {c.Revenue[1]} million in Q2.", "tapt", docs.Count + 1));
        }
        return docs;
    }
}
