using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Research.Data;

/// <summary>
/// A list of documents read from text files, a folder of text files or JSONL.
/// Loaders skip documents whose text is empty or only whitespace, and refuse a corpus left with none.
/// </summary>
public sealed class Corpus
{
    /// <summary>A line holding exactly this (trailing CR allowed) separates documents in a text file.</summary>
    public const string DocumentSeparatorLine = "<|endoftext|>";

    readonly Lazy<string> _fingerprint;

    /// <summary>Builds a corpus from documents already in memory (may be empty, e.g. a validation part of size 0).</summary>
    public Corpus(string name, IReadOnlyList<Document> documents)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(documents);
        Name = name;
        Documents = documents;
        _fingerprint = new Lazy<string>(ComputeFingerprint);
    }

    public string Name { get; }
    public IReadOnlyList<Document> Documents { get; }

    /// <summary>
    /// Lower-case hex SHA-256 over the documents' texts in order (each as its UTF-8 byte length, 8 bytes
    /// little-endian, then its UTF-8 bytes). Does not depend on file names, so a moved corpus keeps it.
    /// </summary>
    public string Fingerprint => _fingerprint.Value;

    /// <summary>UTF-8 bytes in all document texts.</summary>
    public long Bytes => Documents.Sum(d => (long)Encoding.UTF8.GetByteCount(d.Text));

    public override string ToString() => $"{Name} ({Documents.Count} documents)";

    /// <summary>A folder → <see cref="FromFolder"/>; a <c>.jsonl</c> file → <see cref="FromJsonl"/>; any other file → <see cref="FromTextFile"/>.</summary>
    public static Corpus Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) return FromFolder(path);
        if (!File.Exists(path)) throw NotFound(path);
        return Path.GetExtension(path).Equals(".jsonl", StringComparison.OrdinalIgnoreCase)
            ? FromJsonl(path)
            : FromTextFile(path);
    }

    /// <summary>
    /// A UTF-8 text file. The whole file is one document, unless it contains form-feed characters (\f) or
    /// lines of exactly <c>&lt;|endoftext|&gt;</c>: those separate documents (and are not part of any).
    /// Document texts are kept verbatim otherwise (newlines included); blank pieces are skipped.
    /// </summary>
    public static Corpus FromTextFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var docs = ReadTextDocuments(path);
        return NonEmpty(path, Path.GetFileNameWithoutExtension(path), docs);
    }

    /// <summary>Every <c>*.txt</c> under <paramref name="dir"/> (recursively), ordered by ordinal relative path; one document per file.</summary>
    public static Corpus FromFolder(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir)) throw NotFound(dir);
        var files = Directory.EnumerateFiles(dir, "*.txt", SearchOption.AllDirectories)
            .Select(f => (Rel: Path.GetRelativePath(dir, f).Replace('\\', '/'), Full: f))
            .OrderBy(f => f.Rel, StringComparer.Ordinal)
            .ToList();
        var docs = new List<Document>();
        foreach (var (_, full) in files)
        {
            var text = ReadText(full);
            if (!string.IsNullOrWhiteSpace(text)) docs.Add(new Document(text, full, 1));
        }
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
        if (files.Count == 0)
            throw new CorpusException($"{dir}: no *.txt files in this folder or below; put one document per .txt file there, or point at a .txt/.jsonl file");
        return NonEmpty(dir, name, docs);
    }

    /// <summary>
    /// One JSON object per line with a string field <paramref name="field"/>; blank lines are skipped.
    /// A malformed line, a line that is not an object, or a missing or non-string field is an error naming file and line.
    /// </summary>
    public static Corpus FromJsonl(string path, string field = "text")
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(field);
        if (!File.Exists(path)) throw NotFound(path);
        var docs = new List<Document>();
        foreach (var (line, lineNo) in Utf8Text.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using (var json = JsonLine.ParseObject(line, $"{path}:{lineNo}", $"a string field \"{field}\""))
            {
                var root = json.RootElement;
                if (!root.TryGetProperty(field, out var value) || value.ValueKind != JsonValueKind.String)
                    throw new CorpusException($"{path}:{lineNo}: no string field \"{field}\"");
                var text = JsonLine.Text(value, $"{path}:{lineNo}");
                if (!string.IsNullOrWhiteSpace(text)) docs.Add(new Document(text, path, lineNo));
            }
        }
        return NonEmpty(path, Path.GetFileNameWithoutExtension(path), docs);
    }

    /// <summary>
    /// Splits at document level: a seeded shuffle (SplitMix64, see <see cref="Rng"/>) picks
    /// round(validationFraction × count) validation documents — at least 1 and at most count − 1 when the
    /// fraction is above 0 — and both parts keep the corpus order. Fraction 0 gives an empty validation part.
    /// </summary>
    public (Corpus Train, Corpus Validation) Split(double validationFraction, int seed)
    {
        if (!(validationFraction >= 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "validation fraction must be in [0, 1)");
        var n = Documents.Count;
        var nVal = 0;
        if (validationFraction > 0)
        {
            if (n < 2)
                throw new CorpusException($"{Name}: {n} document(s) cannot be split into train and validation; add documents or use validation fraction 0");
            nVal = Math.Clamp((int)Math.Round(validationFraction * n, MidpointRounding.AwayFromZero), 1, n - 1);
        }
        var order = new Rng(Rng.Derive(seed, 0x5117)).Permutation(n);
        var isVal = new bool[n];
        for (var i = 0; i < nVal; i++) isVal[order[i]] = true;
        var train = new List<Document>(n - nVal);
        var val = new List<Document>(nVal);
        for (var i = 0; i < n; i++) (isVal[i] ? val : train).Add(Documents[i]);
        return (new Corpus($"{Name}/train", train), new Corpus($"{Name}/validation", val));
    }

    static Corpus NonEmpty(string path, string name, List<Document> docs)
    {
        if (docs.Count == 0)
            throw new CorpusException($"{path}: corpus is empty (no document with non-whitespace text); add text to it or point at another corpus");
        return new Corpus(name, docs);
    }

    static CorpusException NotFound(string path) =>
        new($"{path}: corpus not found (expected a .txt or .jsonl file, or a folder of .txt files)");

    static string ReadText(string path)
    {
        try { return Utf8Text.ReadAll(path); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { throw NotFound(path); }
        catch (IOException e) { throw new CorpusException($"{path}: cannot read ({e.Message})", e); }
        catch (UnauthorizedAccessException e) { throw new CorpusException($"{path}: cannot read ({e.Message})", e); }
    }

    static List<Document> ReadTextDocuments(string path)
    {
        if (Directory.Exists(path))
            throw new CorpusException($"{path}: is a folder; use Corpus.FromFolder or Corpus.Load");
        var text = ReadText(path);
        var docs = new List<Document>();

        var segStart = 0;
        var pos = 0;
        var countedTo = 0; // line numbers: newlines in text[0..countedTo) are counted in countedLines
        var countedLines = 0;
        while (true)
        {
            var lineEnd = text.IndexOf('\n', pos);
            if (lineEnd < 0) lineEnd = text.Length;
            var content = text.AsSpan(pos, lineEnd - pos);
            if (content.EndsWith("\r")) content = content[..^1];
            if (content.SequenceEqual(DocumentSeparatorLine))
            {
                Add(segStart, pos);
                segStart = Math.Min(lineEnd + 1, text.Length);
            }
            else
            {
                for (var k = text.IndexOf('\f', pos, lineEnd - pos); k >= 0; k = text.IndexOf('\f', k + 1, lineEnd - k - 1))
                {
                    Add(segStart, k);
                    segStart = k + 1;
                }
            }
            if (lineEnd >= text.Length) break;
            pos = lineEnd + 1;
        }
        Add(segStart, text.Length);
        return docs;

        void Add(int start, int end)
        {
            var piece = text[start..end];
            if (string.IsNullOrWhiteSpace(piece)) return;
            // Line of the first non-whitespace character.
            var first = start;
            while (char.IsWhiteSpace(text[first])) first++;
            countedLines += text.AsSpan(countedTo, first - countedTo).Count('\n');
            countedTo = first;
            var startLine = 1 + countedLines;
            docs.Add(new Document(piece, path, startLine));
        }
    }

    string ComputeFingerprint()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> len = stackalloc byte[8];
        foreach (var d in Documents)
        {
            var bytes = Encoding.UTF8.GetBytes(d.Text);
            BinaryPrimitives.WriteInt64LittleEndian(len, bytes.Length);
            sha.AppendData(len);
            sha.AppendData(bytes);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
