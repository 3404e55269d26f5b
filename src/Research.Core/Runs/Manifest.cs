using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Research.Runs;

/// <summary>A data input of a stage as its key saw it: the source's name and the fingerprint of its documents.</summary>
public sealed record ManifestData(string Name, string Fingerprint);

/// <summary>
/// One stage an export came from, with everything its key was computed from (what the node's node.json recorded):
/// kind, code version, config, seed, parents' keys, data fingerprints and the fingerprint of the files it reads.
/// <see cref="Code"/> is null when the node's node.json could not be read (the stage can then not be re-checked);
/// <see cref="KeyFormat"/> is the executor's key format version the key was computed under.
/// </summary>
public sealed record ManifestStage(long Run, string Name, string Kind, string Key, int KeyFormat, int? Code, JsonElement? Config, long Seed,
    IReadOnlyList<string> Parents, IReadOnlyList<ManifestData> Data, string Files, string? Directory);

/// <summary>
/// The provenance of an exported file (figure, table, data export): the code it was made by (git commit and whether the
/// working tree had uncommitted changes, the framework's version), the runs, seeds and stages its numbers came from,
/// and when it was made. Written beside the file as FILE.provenance.json and, where the format has a place for it,
/// inside the file (docs/provenance.md).
/// </summary>
public sealed record Manifest(
    string Commit, string Dirty, string Repository, string Framework, string Created,
    IReadOnlyList<long> Runs, IReadOnlyList<long> Seeds, IReadOnlyList<ManifestStage> Stages, string? Store)
{
    /// <summary>The manifest format; bump when a field changes meaning.</summary>
    public const int FormatVersion = 1;
    public const string SidecarSuffix = ".provenance.json";

    public int Format { get; init; } = FormatVersion;
    /// <summary>The exported file's name (set when it is written).</summary>
    public string? File { get; init; }
    /// <summary>SHA-256 of the exported file as written, manifest inside it included (set in the sidecar only).</summary>
    public string? Sha256 { get; init; }

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
    };

    static readonly JsonSerializerOptions Compact = new(Json) { WriteIndented = false };

    /// <summary>The manifest of an export made by this process from the given runs and stages (commit of <paramref name="directory"/>'s repository, default: the current directory).</summary>
    public static Manifest Create(IReadOnlyList<long> runs, IReadOnlyList<long> seeds, IReadOnlyList<ManifestStage> stages, string? store, string? directory = null)
    {
        var git = GitInfo.Of(directory ?? Environment.CurrentDirectory);
        return new Manifest(git.Commit, git.Dirty, git.Repository, FrameworkVersion, DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            runs, seeds, stages, store);
    }

    /// <summary>A manifest that names no runs: for an export made from data that did not come from the run store.</summary>
    public static Manifest Here() => Create([], [], [], null);

    /// <summary>Research.Core's informational version (the package version, and the commit the build was made from when the SDK knew it).</summary>
    public static string FrameworkVersion { get; } =
        typeof(Manifest).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(Manifest).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>Indented JSON (the sidecar).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// One line of JSON, safe inside HTML, XML, a PDF string, a PNG text chunk and a LaTeX or HTML comment: the encoder
    /// escapes every non-ASCII character and &lt; &gt; &amp; ' + as \uXXXX, so no "--&gt;", "]]&gt;" or "&lt;/" can occur.
    /// </summary>
    public string ToCompactJson() => JsonSerializer.Serialize(this, Compact);

    /// <summary>Reads a manifest; <paramref name="source"/> names where it came from in the error.</summary>
    public static Manifest Parse(string json, string source)
    {
        try
        {
            var m = JsonSerializer.Deserialize<Manifest>(json, Json) ?? throw new JsonException("null");
            if (m.Commit is null || m.Stages is null || m.Runs is null)
                throw new JsonException("commit, runs or stages missing");
            return m;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not a provenance manifest ({e.Message}); write the export again to get a new one", e);
        }
    }

    /// <summary>Where the sidecar of <paramref name="file"/> lives: FILE.provenance.json.</summary>
    public static string SidecarOf(string file) => file + SidecarSuffix;
}
