using Research.Data;

namespace Research.Pipelines;

/// <summary>
/// A corpus a stage reads, loaded once on first use. Its fingerprint (a hash of the documents'
/// texts) enters the key of every stage that reads it, so changed data re-runs those stages.
/// </summary>
public sealed class DataSource
{
    readonly Lazy<Corpus> _corpus;

    public DataSource(string name, Func<Corpus> load)
    {
        Name = name;
        _corpus = new Lazy<Corpus>(load);
    }

    public string Name { get; }
    public Corpus Corpus => _corpus.Value;
    public string Fingerprint => Corpus.Fingerprint;

    /// <summary>A text file, a folder of .txt files or a JSONL file with a "text" field.</summary>
    public static DataSource FromPath(string path, string? name = null) =>
        new(name ?? Path.GetFileNameWithoutExtension(path.TrimEnd('/')), () => Corpus.Load(path));

    public static DataSource FromDocuments(string name, Func<IReadOnlyList<Document>> documents) =>
        new(name, () => new Corpus(name, documents()));

    /// <summary>The seeded train part of a document-level split (what stages train on).</summary>
    public Corpus Train(double validationFraction, int seed) =>
        validationFraction <= 0 ? Corpus : Corpus.Split(validationFraction, seed).Train;

    /// <summary>The held-out part of the same split (what suites evaluate on).</summary>
    public Corpus Validation(double validationFraction, int seed) => Corpus.Split(validationFraction, seed).Validation;

    public override string ToString() => Name;
}
