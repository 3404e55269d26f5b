using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Research.Data;
using Research.Selection;
using Research.Runs;

namespace Research.Pipelines;

/// <summary>
/// Selection as DataSource transforms: the selected corpus is computed on first use, written as JSONL to
/// <c>cacheDir/&lt;method&gt;-&lt;hash&gt;.jsonl</c> (hash of the inputs' fingerprints and the options) and read back from
/// there afterwards. The new source's fingerprint is the selected documents' content, so stages reading it are keyed by it.
/// </summary>
public static class SelectedSources
{
    public static string DefaultCacheDir => Path.Combine("runs", "selection");

    /// <summary>The <paramref name="k"/> documents of <paramref name="pool"/> DSIR picks for <paramref name="target"/>; the report goes beside the JSONL.</summary>
    public static DataSource Dsir(DataSource target, DataSource pool, int k, DsirOptions? options = null, string? cacheDir = null, string? name = null)
    {
        var o = options ?? new DsirOptions();
        return new DataSource(name ?? $"{pool.Name}-dsir", () =>
            Cached(cacheDir, "dsir", $"{target.Fingerprint}|{pool.Fingerprint}|{k}|{o}", name ?? $"{pool.Name}-dsir", path =>
            {
                var r = Selection.Dsir.Select(target.Corpus.Documents, pool.Corpus.Documents, k, o);
                AtomicFile.WriteAllText(Path.ChangeExtension(path, ".report.json"), JsonSerializer.Serialize(new
                {
                    selected = r.Selected, kl_selected = r.KlSelected, kl_random = r.KlRandom, kl_reduction = r.KlReduction,
                }, new JsonSerializerOptions { WriteIndented = true }));
                return r.Selected.Select(i => pool.Corpus.Documents[i]).ToArray();
            }));
    }

    /// <summary>The <paramref name="keep"/> share of <paramref name="source"/> with the lowest perplexity under the checkpoint <paramref name="referenceDir"/>.</summary>
    public static DataSource PerplexityFiltered(DataSource source, string referenceDir, double keep, int maxLength = 128, string? cacheDir = null, string? name = null)
    {
        var weights = Path.Combine(referenceDir, Models.Checkpoint.WeightsFile);
        return new DataSource(name ?? $"{source.Name}-ppl", () =>
        {
            var model = File.Exists(weights) ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(weights))) : referenceDir;
            return Cached(cacheDir, "ppl", $"{source.Fingerprint}|{model}|{keep:R}|{maxLength}", name ?? $"{source.Name}-ppl",
                _ => PerplexityFilter.Filter(source.Corpus, referenceDir, keep, maxLength).Documents);
        });
    }

    static Corpus Cached(string? cacheDir, string method, string identity, string name, Func<string, IReadOnlyList<Document>> select)
    {
        var dir = Path.GetFullPath(cacheDir ?? DefaultCacheDir);
        Directory.CreateDirectory(dir);
        var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{method}\n{identity}")))[..16].ToLowerInvariant();
        var path = Path.Combine(dir, $"{method}-{hash}.jsonl");
        if (!File.Exists(path))
        {
            var docs = select(path);
            if (docs.Count == 0) throw new InvalidOperationException($"{method}: the selection of '{name}' is empty");
            AtomicFile.WriteAllText(path, string.Concat(docs.Select(d => JsonSerializer.Serialize(new { text = d.Text }) + "\n")));
        }
        var corpus = Corpus.FromJsonl(path);
        return new Corpus(name, corpus.Documents);
    }
}
