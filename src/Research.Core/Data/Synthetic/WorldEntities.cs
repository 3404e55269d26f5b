using System.Text;

namespace Research.Data.Synthetic;

/// <summary>A fictional listed company: the facts the domain documents state and the knowledge suite asks about.</summary>
public sealed record Company(string Name, string Ticker, string Sector, string City, string Chief, int[] Revenue, bool Test);

/// <summary>A corporate event and the sentiment of its news line.</summary>
public sealed record CompanyEvent(string Text, bool Positive);

/// <summary>An animal of the fictional encyclopedia.</summary>
public sealed record Animal(string Name, string Habitat, string Food);

/// <summary>A town of the fictional encyclopedia.</summary>
public sealed record Place(string Name, string Feature, string Region);

/// <summary>A person of the fictional encyclopedia.</summary>
public sealed record Person(string Name, string Occupation, string Birthplace);

/// <summary>
/// The entities of a world, drawn from a seed: word lists are small and regular on purpose, so that a byte-level
/// model under a million parameters learns them in a few hundred steps. Companies are split by entity: a third are
/// test companies, whose facts appear only in documents (never in instructions or preferences).
/// </summary>
public sealed record WorldEntities(IReadOnlyList<Company> Companies, IReadOnlyList<Animal> Animals, IReadOnlyList<Place> Places, IReadOnlyList<Person> People)
{
    public static readonly string[] Sectors = ["energy", "banking", "mining", "retail", "software", "shipping", "farming", "insurance"];
    public static readonly string[] Habitats = ["cold streams", "reed marshes", "pine forests", "high meadows", "river deltas", "rocky coasts", "birch woods", "salt flats"];
    public static readonly string[] Foods = ["small fish", "insects", "seeds", "roots", "frogs", "grasses", "snails", "mice"];
    public static readonly string[] Features = ["an old stone bridge", "a quiet harbour", "a market square", "a ruined abbey", "a sandy beach", "a chalk hill", "a slow river", "a lighthouse"];
    public static readonly string[] Regions = ["north", "south", "east", "west"];
    public static readonly string[] Occupations = ["poet", "painter", "sailor", "farmer", "doctor", "builder", "singer", "teacher"];
    static readonly string[] AnimalNames = ["otter", "heron", "lynx", "badger", "salamander", "kestrel", "marmot", "tortoise", "ibis", "wolf", "beaver", "finch", "hare", "stoat", "plover", "newt"];
    static readonly string[] Kinds = ["Group", "Holdings", "Works", "Partners", "Trust"];

    public static readonly CompanyEvent[] Events =
    [
        new("won a large contract", true), new("opened a new plant", true), new("raised its dividend", true), new("beat its profit target", true),
        new("lost a court case", false), new("cut many jobs", false), new("missed its profit target", false), new("closed a factory", false),
    ];

    static readonly string[] Onsets = ["b", "br", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w"];
    static readonly string[] Vowels = ["a", "e", "i", "o", "u"];
    static readonly string[] Codas = ["", "n", "r", "l", "m", "s", "nd", "rk"];

    /// <summary>Companies scale with <paramref name="size"/> (size / 150, between 9 and 48); every third is a test company.</summary>
    public static WorldEntities Create(int size, Rng rng)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        string Fresh(int syllables)
        {
            while (true)
            {
                var sb = new StringBuilder();
                for (var i = 0; i < syllables; i++) sb.Append(Pick(rng, Onsets)).Append(Pick(rng, Vowels)).Append(Pick(rng, Codas));
                var name = char.ToUpperInvariant(sb[0]) + sb.ToString(1, sb.Length - 1);
                if (name.Length >= 4 && used.Add(name)) return name;
            }
        }
        var places = Enumerable.Range(0, 12).Select(_ => new Place(Fresh(2), Pick(rng, Features), Pick(rng, Regions))).ToArray();
        var animals = AnimalNames.Select(a => new Animal(a, Pick(rng, Habitats), Pick(rng, Foods))).ToArray();
        var people = Enumerable.Range(0, 12).Select(_ => new Person($"{Fresh(1)} {Fresh(2)}", Pick(rng, Occupations), Pick(rng, places).Name)).ToArray();
        var n = Math.Clamp(size / 150, 9, 48);
        var tickers = new HashSet<string>(StringComparer.Ordinal);
        var companies = new Company[n];
        for (var i = 0; i < n; i++)
        {
            var stem = Fresh(2);
            var ticker = stem[..3].ToUpperInvariant();
            for (var c = 0; !tickers.Add(ticker); c++) ticker = stem[..2].ToUpperInvariant() + (char)('A' + c);
            var revenue = Enumerable.Range(0, 4).Select(_ => 20 + rng.NextInt(80)).ToArray();
            companies[i] = new Company($"{stem} {Pick(rng, Kinds)}", ticker, Sectors[rng.NextInt(Sectors.Length)], Pick(rng, places).Name,
                $"{Fresh(1)} {Fresh(2)}", revenue, Test: i % 3 == 2);
        }
        return new WorldEntities(companies, animals, places, people);
    }

    public IEnumerable<Company> TrainCompanies => Companies.Where(c => !c.Test);
    public IEnumerable<Company> TestCompanies => Companies.Where(c => c.Test);

    internal static T Pick<T>(Rng r, IReadOnlyList<T> xs) => xs[r.NextInt(xs.Count)];
}
