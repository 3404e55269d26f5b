using Research.Data;
using System.Text.Json;
using Research.Runs;

namespace Research.Selection;

/// <summary>Domain weights: one non-negative number per named domain, summing to 1.</summary>
public sealed record DomainWeights(string[] Domains, double[] Weights)
{
    public const string FileName = "domain_weights.json";

    public double this[string domain] => Weights[Array.IndexOf(Domains, domain) is var i and >= 0 ? i
        : throw new KeyNotFoundException($"no domain '{domain}' (domains: {string.Join(", ", Domains)})")];

    /// <summary>Static weights, normalised to sum 1; every weight must be finite and ≥ 0, and one > 0.</summary>
    public static DomainWeights Static(IReadOnlyList<string> domains, IReadOnlyList<double> weights)
    {
        if (domains.Count != weights.Count)
            throw new ArgumentException($"domain weights: {domains.Count} domains but {weights.Count} weights");
        if (domains.Count == 0) throw new ArgumentException("domain weights: no domains");
        for (var i = 0; i < weights.Count; i++)
            if (!double.IsFinite(weights[i]) || weights[i] < 0)
                throw new ArgumentException($"domain weights: weight of '{domains[i]}' is {weights[i]}; weights must be finite and ≥ 0");
        var sum = weights.Sum();
        if (!(sum > 0)) throw new ArgumentException("domain weights: all weights are 0");
        return new DomainWeights(domains.ToArray(), weights.Select(w => w / sum).ToArray());
    }

    public static DomainWeights Uniform(IReadOnlyList<string> domains) => Static(domains, domains.Select(_ => 1.0).ToArray());

    /// <summary>
    /// Temperature sampling over domains: p_i ∝ n_i^(1/T), n_i = the domain's size (tokens or documents).
    /// T = 1 is proportional to size; T → ∞ tends to uniform; T &lt; 1 favours large domains further.
    /// </summary>
    public static DomainWeights Temperature(IReadOnlyList<string> domains, IReadOnlyList<double> sizes, double temperature)
    {
        if (!(temperature > 0) || !double.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be a finite number > 0");
        return Static(domains, sizes.Select(n => n > 0 ? Math.Exp(Math.Log(n) / temperature) : 0).ToArray());
    }

    /// <summary>This vector with domain <paramref name="domain"/>'s weight multiplied by <paramref name="factor"/>, renormalised.</summary>
    public DomainWeights Upsampled(string domain, double factor)
    {
        if (!(factor >= 0) || !double.IsFinite(factor)) throw new ArgumentOutOfRangeException(nameof(factor), factor, "upsampling factor must be finite and ≥ 0");
        var i = Array.IndexOf(Domains, domain);
        if (i < 0) throw new KeyNotFoundException($"cannot upsample '{domain}': domains are {string.Join(", ", Domains)}");
        var w = Weights.ToArray();
        w[i] *= factor;
        return Static(Domains, w);
    }

    public string ToJson() => JsonSerializer.Serialize(new { domains = Domains, weights = Weights }, new JsonSerializerOptions { WriteIndented = true });

    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Reads {"domains": [...], "weights": [...]}; errors name the file.</summary>
    public static DomainWeights Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"domain weights file {path} does not exist", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var domains = doc.RootElement.GetProperty("domains").EnumerateArray().Select(e => e.GetString()!).ToArray();
            var weights = doc.RootElement.GetProperty("weights").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            return Static(domains, weights);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: not a domain weights file ({{\"domains\": [...], \"weights\": [...]}}): {e.Message}", e);
        }
    }
}
