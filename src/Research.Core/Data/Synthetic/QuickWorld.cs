using System.Globalization;
using System.Text;

namespace Research.Data.Synthetic;

/// <summary>
/// Two clearly different text domains, generated from a seed with no download: a general
/// encyclopedia of places and animals, and a finance domain of quarterly reports. Enough for the
/// quick start to show domain gain and forgetting; the full seeded world is a later, richer generator.
/// Same seed and size: byte-identical documents.
/// </summary>
public static class QuickWorld
{
    static readonly string[] Animals = ["otter", "heron", "lynx", "badger", "salamander", "kestrel", "marmot", "tortoise", "ibis", "wolf", "beaver", "finch"];
    static readonly string[] Habitats = ["cold streams", "reed marshes", "pine forests", "high meadows", "river deltas", "rocky coasts", "birch woods", "salt flats"];
    static readonly string[] Foods = ["small fish", "insects", "seeds and berries", "roots", "frogs", "grasses", "snails", "mice"];
    static readonly string[] Places = ["Arden", "Belmoor", "Calloway", "Dunmere", "Eskvale", "Fenwick", "Glenhart", "Harrowgate", "Islay Cross", "Juniper Bay"];
    static readonly string[] Features = ["an old stone bridge", "a quiet harbour", "a market square", "a ruined abbey", "a long sandy beach", "a chalk hill", "a slow river", "a lighthouse"];
    static readonly string[] Seasons = ["spring", "summer", "autumn", "winter"];
    static readonly string[] Companies = ["Norvale Capital", "Brightwater Energy", "Keystone Logistics", "Halcyon Pharma", "Ridgeway Semiconductors", "Marlow Retail", "Quantis Software", "Ashford Mining"];
    static readonly string[] Tickers = ["NVC", "BWE", "KSL", "HLP", "RWS", "MRL", "QNT", "ASM"];
    static readonly string[] Metrics = ["revenue", "operating income", "net income", "free cash flow", "gross margin"];
    static readonly string[] Moves = ["rose", "fell", "climbed", "declined", "edged up", "slipped"];

    static readonly string[] Onsets = ["b", "br", "c", "d", "dr", "f", "g", "gl", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "w"];
    static readonly string[] Vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou"];
    static readonly string[] Codas = ["", "n", "r", "l", "m", "s", "th", "nd", "rk", "ll"];

    /// <summary>General-domain documents (encyclopedia entries).</summary>
    public static IReadOnlyList<Document> General(int documents, int seed) =>
        Make(documents, seed, "general", GeneralDoc);

    /// <summary>Finance-domain documents (quarterly reports and market news).</summary>
    public static IReadOnlyList<Document> Finance(int documents, int seed) =>
        Make(documents, seed + 1_000_003, "finance", FinanceDoc);

    static IReadOnlyList<Document> Make(int n, int seed, string source, Func<Rng, string[], string> doc)
    {
        if (n <= 0) throw new ArgumentException($"{source}: number of documents must be positive (got {n})");
        var rng = new Rng(seed);
        var names = Enumerable.Range(0, 120).Select(_ => Name(rng)).ToArray();   // a seeded pool of invented proper names
        return Enumerable.Range(0, n).Select(i => new Document(doc(rng, names), source, i + 1)).ToArray();
    }

    static string Name(Rng r)
    {
        var sb = new StringBuilder();
        for (int i = 0, n = 2 + r.NextInt(2); i < n; i++) sb.Append(Pick(r, Onsets)).Append(Pick(r, Vowels)).Append(Pick(r, Codas));
        return char.ToUpperInvariant(sb[0]) + sb.ToString(1, sb.Length - 1);
    }

    static T Pick<T>(Rng r, T[] xs) => xs[r.NextInt(xs.Length)];

    static string GeneralDoc(Rng r, string[] names)
    {
        var sb = new StringBuilder();
        if (r.NextInt(2) == 0)
        {
            var a = Pick(r, Animals);
            sb.Append($"The {a} is an animal of the {Pick(r, Habitats)}. ");
            sb.Append($"It feeds mostly on {Pick(r, Foods)} and rests during the {Pick(r, ["day", "night", "hottest hours"])}. ");
            for (int i = 0, n = 2 + r.NextInt(3); i < n; i++)
                sb.Append(Pick(r, [
                    $"In {Pick(r, Seasons)} the {a} moves to the {Pick(r, Habitats)} to find {Pick(r, Foods)}. ",
                    $"A young {a} stays with its mother until its first {Pick(r, Seasons)}. ",
                    $"Travellers often see the {a} near {Pick(r, Features)} in {Pick(r, Places)}. ",
                    $"The {a} is quiet and careful, and it rarely leaves the {Pick(r, Habitats)}. ",
                    $"An adult {a} of the {Pick(r, names)} valley is about {10 + r.NextInt(90)} centimetres long. ",
                    $"The naturalist {Pick(r, names)} wrote that the {a} sings at {Pick(r, ["dawn", "dusk", "midnight"])}. ",
                ]));
        }
        else
        {
            var p = r.NextInt(2) == 0 ? Pick(r, Places) : Pick(r, names);
            sb.Append($"{p} is a small town known for {Pick(r, Features)}. ");
            sb.Append($"Most people in {p} walk to {Pick(r, Features)} in the {Pick(r, Seasons)}. ");
            for (int i = 0, n = 2 + r.NextInt(3); i < n; i++)
                sb.Append(Pick(r, [
                    $"North of {p} lie the {Pick(r, Habitats)}, where the {Pick(r, Animals)} can be found. ",
                    $"The road from {p} to {Pick(r, Places)} passes {Pick(r, Features)}. ",
                    $"Every {Pick(r, Seasons)} the town holds a fair beside {Pick(r, Features)}. ",
                    $"Children in {p} learn the names of the birds of the {Pick(r, Habitats)}. ",
                    $"About {100 + r.NextInt(9900)} people live in {p}, most of them near {Pick(r, Features)}. ",
                    $"The poet {Pick(r, names)} was born in {p} and wrote about its {Pick(r, Seasons)} evenings. ",
                ]));
        }
        return sb.ToString().TrimEnd();
    }

    static string FinanceDoc(Rng r, string[] names)
    {
        var c = r.NextInt(Companies.Length);
        var (name, ticker) = r.NextInt(2) == 0
            ? (Companies[c], Tickers[c])
            : (Pick(r, names) + Pick(r, [" Holdings", " Capital", " Industries", " Group", " Bank"]), "");
        if (ticker.Length == 0) ticker = name[..Math.Min(3, name.Length)].ToUpperInvariant() + (char)('A' + r.NextInt(26));
        var q = 1 + r.NextInt(4);
        var year = 2019 + r.NextInt(6);
        string Money() => (10 + r.NextDouble() * 990).ToString("F1", CultureInfo.InvariantCulture);
        string Pct() => (0.5 + r.NextDouble() * 19).ToString("F1", CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.Append($"Q{q} {year} results: {name} ({ticker}) reported {Pick(r, Metrics)} of ${Money()}M, ");
        sb.Append($"{Pick(r, ["up", "down"])} {Pct()}% year over year. ");
        for (int i = 0, n = 2 + r.NextInt(3); i < n; i++)
            sb.Append(Pick(r, [
                $"{Char.ToUpperInvariant(Pick(r, Metrics)[0])}{Pick(r, Metrics)[1..]} {Pick(r, Moves)} to ${Money()}M. ",
                $"Shares of {ticker} {Pick(r, Moves)} {Pct()}% after the call. ",
                $"The board declared a dividend of ${(r.NextDouble() * 2).ToString("F2", CultureInfo.InvariantCulture)} per share. ",
                $"Guidance for Q{1 + (q % 4)} calls for EPS of ${(r.NextDouble() * 5).ToString("F2", CultureInfo.InvariantCulture)}. ",
                $"Analysts at {Pick(r, Companies)} rate {ticker} a {Pick(r, ["buy", "hold", "sell"])} with a target of ${Money()}. ",
            ]));
        return sb.ToString().TrimEnd();
    }
}
