namespace Research.Stages.Merge;

/// <summary>
/// The value checks a merge config passes before any tensor is read: every number finite, densities in (0, 1], and
/// weights that do not sum to zero (a normalized merge divides by their sum; all-zero weights merge to nothing).
/// </summary>
static class MergeConfigChecks
{
    /// <summary>Below this a weight sum is zero (the merge rules then silently divide by 1 instead).</summary>
    const double ZeroSum = 1e-8;

    /// <summary>Every parameter of every model and the globals: finite and in range; then the weights.</summary>
    public static void Values(MergeConfig c)
    {
        for (var i = 0; i < c.Models.Count; i++)
            foreach (var (k, s) in c.Models[i].Parameters) Setting(k, s, $"models[{i}].parameters.{k}");
        foreach (var (k, s) in c.Parameters) Setting(k, s, $"parameters.{k}");
        Weights(c);
    }

    static void Setting(string key, ParamSetting s, string where)
    {
        Finite(s, where);
        Range(key, s, where);
    }

    static void Finite(ParamSetting setting, string where)
    {
        for (var i = 0; i < setting.Rules.Count; i++)
            foreach (var v in setting.Rules[i].Values)
                if (!double.IsFinite(v))
                    throw MergeConfigError.At(setting.Rules.Count == 1 && setting.Rules[0].Filter is null ? where : $"{where}[{i}].value",
                        $"{where} must be finite, got {v}");
    }

    /// <summary>Range checks by parameter name (density: a fraction of entries kept, so in (0, 1]).</summary>
    static void Range(string key, ParamSetting setting, string where)
    {
        if (key != "density") return;
        foreach (var v in setting.Rules.SelectMany(r => r.Values))
            if (!(v > 0 && v <= 1))
                throw MergeConfigError.At(where, $"{where} must be in (0, 1] (the fraction of entries kept), got {v}");
    }

    /// <summary>The weights of the models the method weighs: not all zero, and (when normalized) not summing to zero.</summary>
    static void Weights(MergeConfig c)
    {
        if (!c.Spec.TakesWeights) return;
        var models = c.Merged;
        if (models.Count == 0) return;
        c.Parameters.TryGetValue("weight", out var global);
        var settings = models.Select(m => m.Parameters.TryGetValue("weight", out var s) ? s : global ?? ParamSetting.Constant(1)).ToArray();
        var where = FirstWeightPath(c, models);
        if (settings.All(s => Possible(s, global).All(v => v == 0)))
            throw MergeConfigError.At(where, $"every model's weight is 0: merge_method {MergeConfig.MethodName(c.Method)} would merge nothing");
        if (!c.EffectiveNormalize || !settings.All(Unfiltered)) return;
        // Unfiltered weights are piecewise linear in the layer position: the sum is checked at every knot of every gradient.
        var knots = settings.SelectMany(s => Enumerable.Range(0, s.Rules[0].Values.Count)
            .Select(i => s.Rules[0].Values.Count == 1 ? 0.0 : (double)i / (s.Rules[0].Values.Count - 1))).Distinct().Order();
        foreach (var t in knots)
        {
            var sum = settings.Sum(s => s.Rules[0].At(t));
            if (Math.Abs(sum) < ZeroSum)
                throw MergeConfigError.At(where, $"the models' weights sum to {sum} at layer position {t}; normalize divides by that sum " +
                    "(set parameters.normalize: false, or change the weights)");
        }
    }

    static bool Unfiltered(ParamSetting s) => s.Rules.Count > 0 && s.Rules[0].Filter is null or "*";

    /// <summary>Every value the setting can give a tensor: its rules', and the fallback's when no rule matches every name.</summary>
    static IEnumerable<double> Possible(ParamSetting s, ParamSetting? global)
    {
        var own = s.Rules.SelectMany(r => r.Values);
        if (s.Rules.Any(r => r.Filter is null or "*")) return own;
        return own.Concat(global is null || ReferenceEquals(global, s) ? [1.0] : Possible(global, null));
    }

    static string FirstWeightPath(MergeConfig c, IReadOnlyList<MergeModel> models)
    {
        for (var i = 0; i < c.Models.Count; i++)
            if (models.Contains(c.Models[i]) && c.Models[i].Parameters.ContainsKey("weight")) return $"models[{i}].parameters.weight";
        return c.Parameters.ContainsKey("weight") ? "parameters.weight" : "models";
    }
}
