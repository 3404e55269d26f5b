using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Research.Data;
using Research.Data.Synthetic;
using Research.Runs;
using static Research.Data.Synthetic.WorldEntities;

namespace Research.Stages.Uda;

/// <summary>Where <see cref="ShiftBenchmark.Write"/> put the benchmark's two files.</summary>
public sealed record ShiftBenchmarkFiles(string Directory)
{
    /// <summary>Labelled source examples and target examples (their labels are there for the target oracle only).</summary>
    public string Train => Path.Combine(Directory, "train.jsonl");
    /// <summary>Held-out source examples (source validation: ATC's fit) and held-out target examples (the test).</summary>
    public string Test => Path.Combine(Directory, "test.jsonl");
}

/// <summary>
/// A sentiment classification benchmark with a real domain shift, drawn from the default world's entities. Source: the
/// general encyclopedia (animals, towns, people: domains "general/animals", "general/towns", "general/people", so the
/// source is also three sources for multi-source methods); target: the finance domain (company news, domain "finance").
/// Labels "negative" / "positive". Each example states an event whose polarity only its own domain's words carry (a heron
/// lost its nest; a company cut many jobs), and may add a cue sentence whose words are shared by both domains ("It was a
/// bad week."). Every source example has the cue; a target example has it with probability 1 - <c>severity</c>. At
/// severity 0 a source-trained classifier can read every target label from the cue; at severity 1 from none, so the
/// source-only accuracy falls towards chance as severity grows, and the cued target examples are the bridge that
/// self-training and alignment can use to learn the finance events.
/// </summary>
public sealed class ShiftBenchmark
{
    public const string Negative = "negative";
    public const string Positive = "positive";
    public const string Target = "finance";
    public const string Source = "general";

    static readonly string[] GoodCues = ["good", "great", "happy"];
    static readonly string[] BadCues = ["bad", "grim", "sad"];
    static readonly string[] CueFrames = ["It was a {0} week.", "People called it {0} news.", "All in all a {0} time."];

    static readonly (string Text, bool Positive)[] AnimalEvents =
    [
        ("found plenty of {food}", true), ("raised three healthy young", true), ("escaped a hungry fox", true), ("built a warm new den", true),
        ("lost its nest in a storm", false), ("fell ill in the cold", false), ("could not find any {food}", false), ("was hurt by a trap", false),
    ];
    static readonly (string Text, bool Positive)[] TownEvents =
    [
        ("opened a new school", true), ("won the regional fair prize", true), ("repaired {feature}", true), ("welcomed many visitors", true),
        ("was flooded by the river", false), ("lost its only bakery", false), ("saw {feature} collapse", false), ("suffered a long drought", false),
    ];
    static readonly (string Text, bool Positive)[] PersonEvents =
    [
        ("won a prize for their work", true), ("was honoured in {birthplace}", true), ("finished a famous work", true), ("recovered fully", true),
        ("lost all their savings", false), ("fell ill for a whole winter", false), ("was forced to leave {birthplace}", false), ("was badly injured", false),
    ];

    public double Severity { get; }
    public int Seed { get; }
    public IReadOnlyList<LabeledText> Train { get; }
    public IReadOnlyList<LabeledText> Test { get; }

    /// <param name="size">Training examples per domain (source and target); the test holds size / 2 per domain.</param>
    /// <param name="severity">Share of target examples without the shared cue, in [0, 1].</param>
    public ShiftBenchmark(int size, double severity, int seed)
    {
        if (size < 8) throw new ArgumentException($"shift benchmark: size must be at least 8 examples per domain (got {size})");
        if (!(severity is >= 0 and <= 1)) throw new ArgumentException($"shift benchmark: severity must be in [0, 1] (got {severity})");
        (Severity, Seed) = (severity, seed);
        var world = WorldEntities.Create(Math.Max(1350, size), new Rng(Rng.Derive(seed, 0x5A1F7, 0)));
        Rng R(int k) => new(Rng.Derive(seed, 0x5A1F7, k));
        Train = [.. Examples(world, size, R(1), "train.jsonl", sourceSide: true), .. Examples(world, size, R(2), "train.jsonl", sourceSide: false)];
        Test = [.. Examples(world, size / 2, R(3), "test.jsonl", sourceSide: true), .. Examples(world, size / 2, R(4), "test.jsonl", sourceSide: false)];
        Train = Renumber(Train, "train.jsonl");
        Test = Renumber(Test, "test.jsonl");
    }

    static IReadOnlyList<LabeledText> Renumber(IReadOnlyList<LabeledText> xs, string file) =>
        xs.Select((x, i) => x with { Source = file, Line = i + 1 }).ToArray();

    IEnumerable<LabeledText> Examples(WorldEntities w, int count, Rng r, string file, bool sourceSide)
    {
        for (var i = 0; i < count; i++)
        {
            var positive = r.NextInt(2) == 1;
            string text, domain;
            if (sourceSide)
            {
                switch (r.NextInt(3))
                {
                    case 0:
                        var a = Pick(r, w.Animals);
                        text = $"The {a.Name} of the {a.Habitat} {Event(r, AnimalEvents, positive).Replace("{food}", a.Food)}.";
                        domain = "general/animals";
                        break;
                    case 1:
                        var p = Pick(r, w.Places);
                        text = $"The town of {p.Name} {Event(r, TownEvents, positive).Replace("{feature}", p.Feature)}.";
                        domain = "general/towns";
                        break;
                    default:
                        var q = Pick(r, w.People);
                        text = $"The {q.Occupation} {q.Name} {Event(r, PersonEvents, positive).Replace("{birthplace}", q.Birthplace)}.";
                        domain = "general/people";
                        break;
                }
            }
            else
            {
                var c = Pick(r, w.Companies);
                var e = Pick(r, Events.Where(x => x.Positive == positive).ToArray());
                text = $"{c.Name} {e.Text}. Shares of {c.Ticker} {(positive ? "rose" : "fell")} {1 + r.NextInt(15)} percent.";
                domain = Target;
            }
            var cued = sourceSide || r.NextDouble() >= Severity;
            if (cued) text += " " + string.Format(System.Globalization.CultureInfo.InvariantCulture, Pick(r, CueFrames), Pick(r, positive ? GoodCues : BadCues));
            yield return new LabeledText(text, positive ? Positive : Negative, domain, file, i + 1);
        }
    }

    static string Event(Rng r, (string Text, bool Positive)[] events, bool positive) =>
        Pick(r, events.Where(e => e.Positive == positive).Select(e => e.Text).ToArray());

    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes train.jsonl and test.jsonl (each atomically); the same (size, severity, seed) gives the same bytes.</summary>
    public ShiftBenchmarkFiles Write(string directory)
    {
        var f = new ShiftBenchmarkFiles(Path.GetFullPath(directory));
        System.IO.Directory.CreateDirectory(f.Directory);
        Lines(f.Train, Train);
        Lines(f.Test, Test);
        return f;
    }

    static void Lines(string path, IEnumerable<LabeledText> rows)
    {
        var sb = new StringBuilder();
        foreach (var x in rows) sb.Append(JsonSerializer.Serialize(new { text = x.Text, label = x.Label, domain = x.Domain }, Json)).Append('\n');
        AtomicFile.WriteAllText(path, sb.ToString());
    }
}
