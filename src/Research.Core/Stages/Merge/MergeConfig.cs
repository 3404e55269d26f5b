using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Research.Stages.Merge;

/// <summary>The merge methods, named in configs as mergekit names them (snake_case).</summary>
public enum MergeMethod { Linear, Slerp, TaskArithmetic, Ties, DareLinear, DareTies, Breadcrumbs, BreadcrumbsTies, ModelStock, Della, DellaLinear }

/// <summary>
/// One rule of a parameter: applies to tensors whose name matches <see cref="Filter"/> (null or "*": every tensor;
/// "re:PATTERN": a regex searched in the name; a text with * or ?: a glob on the whole name; else a substring,
/// as mergekit matches). One value is a constant; several are a gradient over the layers: layer l of L reads the
/// list at l/(L-1), linearly interpolated; tensors outside the layers (embeddings, final norm, head) read position 0.
/// Patterns run on .NET's non-backtracking engine (time linear in the name, so no pattern can hang a merge); it has no
/// backreferences, lookarounds or atomic groups, which <see cref="CheckPattern"/> rejects when the config is read.
/// </summary>
public sealed record ParamRule(string? Filter, IReadOnlyList<double> Values)
{
    /// <summary>The options every filter pattern runs with.</summary>
    public const RegexOptions PatternOptions = RegexOptions.CultureInvariant | RegexOptions.NonBacktracking;

    public bool Matches(string tensorName)
    {
        if (Filter is null or "*") return true;
        if (Filter.StartsWith("re:", StringComparison.Ordinal)) return Regex.IsMatch(tensorName, Filter[3..], PatternOptions);
        if (Filter.Contains('*') || Filter.Contains('?'))
            return Regex.IsMatch(tensorName, "^" + Regex.Escape(Filter).Replace(@"\*", ".*").Replace(@"\?", ".") + "$", PatternOptions);
        return tensorName.Contains(Filter, StringComparison.Ordinal);
    }

    /// <summary>Null when the "re:" pattern compiles for the non-backtracking engine, else why not.</summary>
    public static string? CheckPattern(string pattern)
    {
        try
        {
            _ = new Regex(pattern, PatternOptions);
            return null;
        }
        catch (ArgumentException e) { return $"bad regex: {e.Message}"; }
        catch (NotSupportedException e) { return $"regex construct not supported (filters use the non-backtracking engine: no backreferences, lookarounds or atomic groups): {e.Message}"; }
    }

    /// <summary>The value at layer position t in [0, 1].</summary>
    public double At(double t)
    {
        if (Values.Count == 1) return Values[0];
        var scaled = Math.Clamp(t, 0, 1) * (Values.Count - 1);
        var i0 = (int)scaled;
        var i1 = Math.Min(Values.Count - 1, i0 + 1);
        var frac = scaled - i0;
        return (1 - frac) * Values[i0] + frac * Values[i1];
    }
}

/// <summary>A parameter's rules, tried in order; the first whose filter matches gives the value.</summary>
public sealed record ParamSetting(IReadOnlyList<ParamRule> Rules)
{
    public static ParamSetting Constant(double value) => new([new ParamRule(null, [value])]);

    public double? Evaluate(string tensorName, double layerPosition)
    {
        foreach (var r in Rules)
            if (r.Matches(tensorName)) return r.At(layerPosition);
        return null;
    }
}

/// <summary>One input model (a checkpoint directory) and its own parameters (weight, density, gamma, epsilon).</summary>
public sealed record MergeModel(string Model, IReadOnlyDictionary<string, ParamSetting> Parameters);

/// <summary>
/// A merge, read from mergekit-style YAML or the same shape in JSON:
/// <code>
/// merge_method: ties            # linear slerp task_arithmetic ties dare_linear dare_ties breadcrumbs breadcrumbs_ties model_stock della della_linear
/// base_model: runs/base
/// models:
///   - model: runs/math
///     parameters: {weight: 1.0, density: 0.5}
///   - model: runs/code
///     parameters:
///       weight: [0, 0.5, 1]      # gradient over layers
///       density: [{filter: mlp, value: 0.3}, {value: 0.6}]
/// parameters: {lambda: 1.0, normalize: true, rescale: l1}
/// dtype: bfloat16               # output dtype; default: the base model's
/// seed: 0                       # DARE / DELLA masks are drawn from (seed, tensor name, model index)
/// </code>
/// Keys not listed here are rejected with their name. Numeric parameters given under the top-level
/// <c>parameters</c> are defaults for every model. Defaults: weight 1, density 1, gamma 0.01, epsilon 0.15,
/// lambda 1; normalize on for linear, ties and della, off otherwise; rescale (DARE, DELLA) 1/p.
/// <c>int8_mask</c> is accepted and ignored (a mergekit memory option).
/// </summary>
public sealed record MergeConfig
{
    public MergeMethod Method { get; init; }
    public string? BaseModel { get; init; }
    public IReadOnlyList<MergeModel> Models { get; init; } = [];
    /// <summary>Global numeric parameters (lambda, t, and defaults of weight/density/gamma/epsilon).</summary>
    public IReadOnlyDictionary<string, ParamSetting> Parameters { get; init; } = new Dictionary<string, ParamSetting>();
    /// <summary>Null: the method's default (on for linear, ties, della).</summary>
    public bool? Normalize { get; init; }
    /// <summary>Null: <see cref="RescaleMode.Inverse"/> for DARE and DELLA.</summary>
    public RescaleMode? Rescale { get; init; }
    /// <summary>Output dtype: float32, float16 or bfloat16; null keeps the base model's.</summary>
    public string? Dtype { get; init; }
    public long Seed { get; init; }

    public static readonly string[] ModelParameterNames = ["weight", "density", "gamma", "epsilon"];
    public static readonly string[] GlobalParameterNames = ["weight", "density", "gamma", "epsilon", "lambda", "t", "normalize", "rescale", "int8_mask"];
    static readonly string[] TopKeys = ["merge_method", "base_model", "models", "parameters", "dtype", "seed"];
    static readonly string[] Dtypes = ["float32", "float16", "bfloat16"];

    /// <summary>The method's name in configs (mergekit's), from <see cref="MergeMethods"/>.</summary>
    public static string MethodName(MergeMethod m) => MergeMethods.Of(m).Name;

    /// <summary>Whether the method adds task vectors to a base (so base_model is required).</summary>
    public static bool NeedsBase(MergeMethod m) => MergeMethods.Of(m).NeedsBase;

    /// <summary>The models other than the base, in config order (the base is skipped if listed).</summary>
    public IReadOnlyList<MergeModel> Others => Models.Where(m => m.Model != BaseModel).ToArray();

    /// <summary>The method's spec in the registry.</summary>
    public MergeMethodSpec Spec => MergeMethods.Of(Method);

    /// <summary>The models the method weighs and merges: every model for a method without a base, else those besides it.</summary>
    public IReadOnlyList<MergeModel> Merged => Spec.NeedsBase ? Others : Models;

    public bool EffectiveNormalize => Normalize ?? Spec.NormalizeByDefault;

    public RescaleMode EffectiveRescale => Rescale ?? RescaleMode.Inverse;

    // ---------------------------------------------------------------- reading

    public static MergeConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"merge config not found: {path}", path);
        var text = File.ReadAllText(path);
        try
        {
            return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromJson(text) : FromYaml(text);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Reads YAML; every error names the line it is about ("YAML line 7: models[1].parameters.density ...").</summary>
    public static MergeConfig FromYaml(string text)
    {
        var tree = YamlTree.Parse(text, out var lines);
        try { return FromTree(tree); }
        catch (InvalidDataException e) { throw MergeConfigError.WithLine(e, lines); }
    }

    public static MergeConfig FromJson(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return FromTree(FromJsonElement(doc.RootElement));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"merge config is not valid JSON: {e.Message}", e);
        }
    }

    static object? FromJsonElement(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().Aggregate(new Dictionary<string, object?>(StringComparer.Ordinal), (d, p) =>
        {
            if (!d.TryAdd(p.Name, FromJsonElement(p.Value))) throw new InvalidDataException($"key '{p.Name}' appears twice");
            return d;
        }),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJsonElement).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetDouble(out var d) ? d : throw new InvalidDataException($"number {e.GetRawText()} does not fit a double"),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>Builds the record from parsed YAML/JSON values, naming any key it does not know.</summary>
    public static MergeConfig FromTree(object? tree)
    {
        var root = tree as Dictionary<string, object?> ?? throw MergeConfigError.At("", "merge config must be a map at the top level");
        CheckKeys(root, TopKeys, "");
        var methodText = root.TryGetValue("merge_method", out var mv) ? mv as string : null;
        if (methodText is null) throw MergeConfigError.At("", "merge config lacks 'merge_method'");
        var method = MergeMethods.Named(methodText)?.Method
            ?? throw MergeConfigError.At("merge_method", $"merge_method '{methodText}' is not known (known: {string.Join(", ", MergeMethods.All.Select(m => m.Name))})");

        var baseModel = root.TryGetValue("base_model", out var b) ? AsString(b, "base_model") : null;
        var models = new List<MergeModel>();
        if (root.TryGetValue("models", out var ms))
        {
            var list = ms as List<object?> ?? throw MergeConfigError.At("models", "'models' must be a list");
            for (var i = 0; i < list.Count; i++)
            {
                var where = $"models[{i}]";
                var m = list[i] as Dictionary<string, object?> ?? throw MergeConfigError.At(where, $"{where} must be a map with 'model'");
                CheckKeys(m, ["model", "parameters"], where + ".");
                var path = m.TryGetValue("model", out var mp) ? AsString(mp, where + ".model") : null;
                if (string.IsNullOrEmpty(path)) throw MergeConfigError.At(where, $"{where} lacks 'model'");
                var ps = new SortedDictionary<string, ParamSetting>(StringComparer.Ordinal);
                if (m.TryGetValue("parameters", out var pv) && pv is not null)
                {
                    var pm = pv as Dictionary<string, object?> ?? throw MergeConfigError.At(where + ".parameters", $"{where}.parameters must be a map");
                    CheckKeys(pm, ModelParameterNames, where + ".parameters.");
                    foreach (var (k, v) in pm) ps[k] = Setting(v, $"{where}.parameters.{k}");
                }
                models.Add(new MergeModel(path, ps));
            }
        }

        var globals = new SortedDictionary<string, ParamSetting>(StringComparer.Ordinal);
        bool? normalize = null;
        RescaleMode? rescale = null;
        if (root.TryGetValue("parameters", out var gp) && gp is not null)
        {
            var pm = gp as Dictionary<string, object?> ?? throw MergeConfigError.At("parameters", "'parameters' must be a map");
            CheckKeys(pm, GlobalParameterNames, "parameters.");
            foreach (var (k, v) in pm)
            {
                switch (k)
                {
                    case "normalize": normalize = v as bool? ?? throw MergeConfigError.At("parameters.normalize", $"parameters.normalize must be true or false, got {Show(v)}"); break;
                    case "int8_mask": break;
                    case "rescale":
                        rescale = v switch
                        {
                            true or "inverse" => RescaleMode.Inverse,
                            false or "none" => RescaleMode.None,
                            "l1" => RescaleMode.L1,
                            _ => throw MergeConfigError.At("parameters.rescale", $"parameters.rescale must be true, false, 'inverse', 'l1' or 'none', got {Show(v)}"),
                        };
                        break;
                    default: globals[k] = Setting(v, $"parameters.{k}"); break;
                }
            }
        }

        var dtype = root.TryGetValue("dtype", out var dv) ? AsString(dv, "dtype") : null;
        if (dtype is not null && !Dtypes.Contains(dtype))
            throw MergeConfigError.At("dtype", $"dtype '{dtype}' is not one of {string.Join(", ", Dtypes)}");
        long seed = 0;
        if (root.TryGetValue("seed", out var sv))
            // within ±2^53, where every integer is a double: beyond, (long) of 1e300 is long.MinValue, as of 1e301
            seed = sv is double sd && sd == Math.Floor(sd) && Math.Abs(sd) <= 9007199254740992.0 ? (long)sd
                : throw MergeConfigError.At("seed", $"seed must be an integer within ±2^53, got {Show(sv)}");

        var config = new MergeConfig
        {
            Method = method, BaseModel = baseModel, Models = models, Parameters = globals,
            Normalize = normalize, Rescale = rescale, Dtype = dtype, Seed = seed,
        };
        return config.Validate();
    }

    /// <summary>
    /// Checks what the method's spec asks for (a base, the number of models besides it, its required parameters), that
    /// no parameter is set that the method does not read (a typo or a wrong method would otherwise be silently ignored),
    /// and the parameters' values (<see cref="MergeConfigChecks"/>).
    /// </summary>
    public MergeConfig Validate()
    {
        var spec = Spec;
        var name = spec.Name;
        if (spec.NeedsBase && BaseModel is null) throw MergeConfigError.At("merge_method", $"merge_method {name} needs 'base_model'");
        var merged = Merged.Count;
        var what = spec.NeedsBase ? "besides the base" : "in all";
        if (merged < spec.MinOthers || (spec.MaxOthers is { } max && merged > max))
        {
            var wanted = spec.MaxOthers == spec.MinOthers ? $"exactly {spec.MinOthers}" : $"at least {spec.MinOthers}";
            throw MergeConfigError.At("models", $"merge_method {name} needs {wanted} model(s) {what} under 'models'; it names {merged}");
        }
        foreach (var p in spec.Required)
            if (!Parameters.ContainsKey(p)) throw MergeConfigError.At("merge_method", $"merge_method {name} needs parameters.{p}");
        var reads = spec.Parameters.Count == 0 ? "no parameters" : $"only {string.Join(", ", spec.Parameters)}";
        for (var i = 0; i < Models.Count; i++)
            foreach (var k in Models[i].Parameters.Keys)
                if (!spec.Reads(k)) throw MergeConfigError.At($"models[{i}].parameters.{k}", $"merge_method {name} does not read '{k}' (it reads {reads}); remove it or choose another method");
        foreach (var k in Parameters.Keys)
            if (!spec.Reads(k)) throw MergeConfigError.At($"parameters.{k}", $"merge_method {name} does not read '{k}' (it reads {reads}); remove it or choose another method");
        if (Rescale is not null && !spec.TakesRescale)
            throw MergeConfigError.At("parameters.rescale", $"merge_method {name} does not rescale (only {string.Join(", ", MergeMethods.All.Where(m => m.TakesRescale).Select(m => m.Name))} do); remove parameters.rescale");
        MergeConfigChecks.Values(this);
        return this;
    }

    static void CheckKeys(Dictionary<string, object?> map, string[] known, string prefix)
    {
        foreach (var k in map.Keys)
            if (!known.Contains(k))
                throw MergeConfigError.At(prefix + k, k == "slices" && prefix == ""
                    ? "unknown key 'slices': layer slicing is not supported; list whole models under 'models'"
                    : $"unknown key '{prefix}{k}' (known here: {string.Join(", ", known)})");
    }

    static string? AsString(object? v, string where) =>
        v is null or string ? (string?)v : throw MergeConfigError.At(where, $"{where} must be a string, got {Show(v)}");

    /// <summary>A scalar, a gradient list of numbers, or a list of {filter, value} rules.</summary>
    static ParamSetting Setting(object? v, string where)
    {
        switch (v)
        {
            case double d: return ParamSetting.Constant(d);
            case List<object?> list when list.Count > 0 && list.All(x => x is double):
                return new ParamSetting([new ParamRule(null, list.Cast<double>().ToArray())]);
            case List<object?> list when list.Count > 0 && list.All(x => x is Dictionary<string, object?>):
                var rules = new List<ParamRule>();
                for (var i = 0; i < list.Count; i++)
                {
                    var m = (Dictionary<string, object?>)list[i]!;
                    CheckKeys(m, ["filter", "value"], $"{where}[{i}].");
                    var filter = m.TryGetValue("filter", out var f) ? AsString(f, $"{where}[{i}].filter") : null;
                    if (!m.TryGetValue("value", out var val)) throw MergeConfigError.At($"{where}[{i}]", $"{where}[{i}] lacks 'value'");
                    var inner = Setting(val, $"{where}[{i}].value");
                    if (inner.Rules.Count != 1 || inner.Rules[0].Filter is not null)
                        throw MergeConfigError.At($"{where}[{i}].value", $"{where}[{i}].value must be a number or a list of numbers");
                    if (filter is not null && filter.StartsWith("re:", StringComparison.Ordinal) && ParamRule.CheckPattern(filter[3..]) is { } bad)
                        throw MergeConfigError.At($"{where}[{i}].filter", $"{where}[{i}].filter: {bad}");
                    rules.Add(new ParamRule(filter, inner.Rules[0].Values));
                }
                return new ParamSetting(rules);
            default:
                throw MergeConfigError.At(where, $"{where} must be a number, a list of numbers (a gradient over layers) or a list of {{filter, value}} rules; got {Show(v)}");
        }
    }

    static string Show(object? v) => v switch
    {
        null => "null",
        string s => $"'{s}'",
        bool x => x ? "true" : "false",
        double d => d.ToString(CultureInfo.InvariantCulture),
        List<object?> => "a list",
        _ => "a map",
    };

    // ---------------------------------------------------------------- canonical form and equality

    /// <summary>Canonical JSON (every field, parameters sorted); two configs are equal when this text is.</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("merge_method", MethodName(Method));
            if (BaseModel is not null) w.WriteString("base_model", BaseModel);
            w.WriteStartArray("models");
            foreach (var m in Models)
            {
                w.WriteStartObject();
                w.WriteString("model", m.Model);
                WriteParams(w, m.Parameters, null, null);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteParams(w, Parameters, Normalize, Rescale);
            if (Dtype is not null) w.WriteString("dtype", Dtype);
            w.WriteNumber("seed", Seed);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    static void WriteParams(Utf8JsonWriter w, IReadOnlyDictionary<string, ParamSetting> ps, bool? normalize, RescaleMode? rescale)
    {
        w.WriteStartObject("parameters");
        foreach (var (k, s) in ps.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            w.WriteStartArray(k);
            foreach (var r in s.Rules)
            {
                w.WriteStartObject();
                if (r.Filter is not null) w.WriteString("filter", r.Filter);
                w.WriteStartArray("value");
                foreach (var x in r.Values) w.WriteNumberValue(x);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        if (normalize is { } n) w.WriteBoolean("normalize", n);
        if (rescale is { } r2) w.WriteString("rescale", r2 switch { RescaleMode.L1 => "l1", RescaleMode.None => "none", _ => "inverse" });
        w.WriteEndObject();
    }

    public bool Equals(MergeConfig? other) => other is not null && ToJson() == other.ToJson();

    public override int GetHashCode() => ToJson().GetHashCode(StringComparison.Ordinal);
}
