using System.Globalization;
using System.Text.RegularExpressions;

namespace Research.Templates;

/// <summary>jinja2's filters that chat templates use, with jinja2's argument names and defaults, and
/// transformers' <c>tojson</c>. A filter not listed here is rejected when the template is parsed.</summary>
internal static partial class Filters
{
    delegate object? Filter(object? value, Arguments args);

    static readonly Dictionary<string, Filter> All = new()
    {
        ["trim"] = (v, a) => Methods.Strip(Py.Str(v), a.Get(0, "chars") as string, true, true),
        ["length"] = (v, _) => Py.Length(v),
        ["count"] = (v, _) => Py.Length(v),
        ["upper"] = (v, _) => Py.Str(v).ToUpperInvariant(),
        ["lower"] = (v, _) => Py.Str(v).ToLowerInvariant(),
        ["title"] = (v, _) => JinjaTitle(Py.Str(v)),
        ["capitalize"] = (v, _) => Methods.Capitalize(Py.Str(v)),
        ["default"] = Default,
        ["d"] = Default,
        ["join"] = Join,
        ["first"] = (v, _) => Py.Iterate(v).Take(1).ToList() is [var x] ? x : new Undefined("No first item, sequence was empty."),
        ["last"] = (v, _) => ToList(v) is { Count: > 0 } l ? l[^1] : new Undefined("No last item, sequence was empty."),
        ["list"] = (v, _) => ToList(v),
        ["items"] = Items,
        ["tojson"] = (v, a) =>
        {
            a.Check("tojson", 5, "ensure_ascii", "indent", "separators", "sort_keys");
            return Json.Dumps(v, Py.Truthy(a.Get(0, "ensure_ascii", false)), a.Get(1, "indent"), a.Get(2, "separators"), Py.Truthy(a.Get(3, "sort_keys", false)));
        },
        ["string"] = (v, _) => Py.Str(v),
        ["safe"] = (v, _) => v,
        ["int"] = ToInt,
        ["float"] = ToFloat,
        ["abs"] = (v, _) => v switch
        {
            long l => (object)Math.Abs(l),
            double d => Math.Abs(d),
            bool b => b ? 1L : 0L,
            _ => throw new JinjaError($"bad operand type for abs(): '{Py.TypeName(v)}'"),
        },
        ["round"] = Round,
        ["replace"] = (v, a) =>
        {
            string s = Py.Str(v);
            string old = Py.Str(a.Get(0, "old")), @new = Py.Str(a.Get(1, "new"));
            return Methods.Replace(s, old, @new, a.Get(2, "count") is long c ? c : -1);
        },
        ["reverse"] = (v, _) => v is string s ? string.Concat(Py.Chars(s).Cast<string>().Reverse()) : Enumerable.Reverse(ToList(v)).ToList(),
        ["unique"] = Unique,
        ["wordcount"] = (v, _) => (long)WordRegex().Matches(Py.Str(v)).Count,
        ["indent"] = Indent,
        ["select"] = (v, a) => SelectItems(v, a, attribute: false, keep: true),
        ["reject"] = (v, a) => SelectItems(v, a, attribute: false, keep: false),
        ["selectattr"] = (v, a) => SelectItems(v, a, attribute: true, keep: true),
        ["rejectattr"] = (v, a) => SelectItems(v, a, attribute: true, keep: false),
        ["map"] = Map,
        ["attr"] = (v, a) => Py.GetAttr(v, Py.Str(a.Get(0, "name"))),
        ["sort"] = Sort,
        ["dictsort"] = DictSort,
        ["sum"] = (v, a) =>
        {
            var getter = a.Get(0, "attribute") is { } attr ? AttrGetter(attr) : (x => x);
            object? total = a.Get(1, "start", 0L);
            foreach (var x in Py.Iterate(v)) total = Py.Binary("+", total, getter(x));
            return total;
        },
        ["min"] = (v, a) => MinMax(v, a, -1),
        ["max"] = (v, a) => MinMax(v, a, 1),
        ["center"] = (v, a) =>
        {
            string s = Py.Str(v);
            int width = (int)(a.Get(0, "width", 80L) as long? ?? 80);
            if (s.Length >= width) return s;
            int total = width - s.Length, left = total / 2 + (total & width & 1);
            return new string(' ', left) + s + new string(' ', total - left);
        },
    };

    public static bool IsKnown(string name) => All.ContainsKey(name);

    public static object? Apply(string name, object? value, Arguments args)
    {
        if (!All.TryGetValue(name, out var filter)) throw new JinjaError($"filter '{name}' is not supported");
        return filter(value, args);
    }

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRegex();

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginning();

    /// <summary>jinja2's title filter (not str.title): each word after a space, '-', or an opening
    /// bracket gets an upper-case first letter and a lower-case rest.</summary>
    static string JinjaTitle(string s) => string.Concat(WordBeginning().Split(s)
        .Where(item => item.Length > 0)
        .Select(item => char.ToUpperInvariant(item[0]) + item[1..].ToLowerInvariant()));

    static List<object?> ToList(object? v) => Py.Iterate(v).ToList();

    static object? Default(object? v, Arguments a)
    {
        a.Check("default", 2, "default_value", "boolean");
        bool boolean = Py.Truthy(a.Get(1, "boolean", false));
        return v is Undefined || (boolean && !Py.Truthy(v)) ? a.Get(0, "default_value", "") : v;
    }

    static object? Join(object? v, Arguments a)
    {
        string sep = Py.Str(a.Get(0, "d", ""));
        var getter = a.Get(1, "attribute") is { } attr ? AttrGetter(attr) : (x => x);
        return string.Join(sep, Py.Iterate(v).Select(x => Py.Str(getter(x))));
    }

    static object? Items(object? v, Arguments _) => v switch
    {
        Undefined => new List<object?>(),
        JinjaDict d => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
        _ => throw new JinjaError($"Can only get item pairs from a mapping, not {Py.TypeName(v)}."),
    };

    static object? ToInt(object? v, Arguments a)
    {
        object? dflt = a.Get(0, "default", 0L);
        long numberBase = a.Get(1, "base", 10L) as long? ?? 10;
        switch (v)
        {
            case long or bool: return v is bool b ? (b ? 1L : 0L) : v;
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : dflt;
            case string s:
                {
                    var t = s.Trim().Replace("_", "");
                    try { return Convert.ToInt64(t, (int)numberBase); } catch (Exception e) when (e is FormatException or ArgumentException or OverflowException) { }
                    if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && double.IsFinite(f)) return (long)Math.Truncate(f);
                    return dflt;
                }
            default: return dflt;
        }
    }

    static object? ToFloat(object? v, Arguments a)
    {
        object? dflt = a.Get(0, "default", 0.0);
        return v switch
        {
            long l => (double)l,
            bool b => b ? 1.0 : 0.0,
            double d => d,
            string s when double.TryParse(s.Trim().Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) => f,
            string s when s.Trim().ToLowerInvariant() is "inf" or "infinity" or "+inf" => double.PositiveInfinity,
            string s when s.Trim().ToLowerInvariant() is "-inf" or "-infinity" => double.NegativeInfinity,
            string s when s.Trim().ToLowerInvariant() is "nan" => double.NaN,
            _ => dflt,
        };
    }

    static object? Round(object? v, Arguments a)
    {
        int precision = (int)(a.Get(0, "precision", 0L) as long? ?? 0);
        string method = Py.Str(a.Get(1, "method", "common"));
        double x = v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw new JinjaError($"round needs a number, not {Py.TypeName(v)}") };
        double scale = Math.Pow(10, precision);
        double r = method switch
        {
            "common" => Math.Round(x, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
            "floor" => Math.Floor(x * scale) / scale,
            "ceil" => Math.Ceiling(x * scale) / scale,
            _ => throw new JinjaError("method must be 'common', 'ceil' or 'floor'"),
        };
        return method == "common" && v is long or bool ? (object)(long)r : r;
    }

    static object? Unique(object? v, Arguments a)
    {
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        var getter = a.Get(1, "attribute") is { } attr ? AttrGetter(attr) : (x => x);
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in Py.Iterate(v))
        {
            var key = getter(item);
            if (!caseSensitive && key is string s) key = s.ToLowerInvariant();
            if (seen.Any(k => Py.Equal(k, key))) continue;
            seen.Add(key);
            result.Add(item);
        }
        return result;
    }

    static object? Indent(object? v, Arguments a)
    {
        var width = a.Get(0, "width", 4L);
        string unit = width as string ?? new string(' ', (int)(width as long? ?? 4));
        bool first = Py.Truthy(a.Get(1, "first", false)), blank = Py.Truthy(a.Get(2, "blank", false));
        var lines = (List<object?>)Methods.Find(Py.Str(v) + "\n", "splitlines")!.Call(Arguments.None)!;
        string rv;
        if (blank) rv = string.Join("\n" + unit, lines.Cast<string>());
        else
        {
            rv = (string)lines[0]!;
            if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Cast<string>().Select(l => l.Length > 0 ? unit + l : l));
        }
        return first ? unit + rv : rv;
    }

    /// <summary>jinja2's attribute getter for filters: a dotted path ("a.b", "items.0") looked up
    /// item-first, as <c>environment.getitem</c> does.</summary>
    static Func<object?, object?> AttrGetter(object? attribute)
    {
        if (attribute is long l) return x => Py.GetItem(x, l);
        var parts = Py.Str(attribute).Split('.');
        return x =>
        {
            foreach (var p in parts) x = Py.GetItem(x, long.TryParse(p, out var n) ? n : p);
            return x;
        };
    }

    static object? SelectItems(object? v, Arguments a, bool attribute, bool keep)
    {
        int offset = attribute ? 1 : 0;
        Func<object?, object?> getter = attribute ? AttrGetter(a.Positional.ElementAtOrDefault(0)) : (x => x);
        Func<object?, bool> test;
        if (a.Positional.Count <= offset) test = Py.Truthy;
        else
        {
            string name = Py.Str(a.Positional[offset]);
            if (!IsTests.IsKnown(name)) throw new JinjaError($"test '{name}' is not supported");
            var rest = new Arguments(a.Positional.Skip(offset + 1).ToList(), a.Keyword);
            test = x => IsTests.Apply(name, x, rest);
        }
        return Py.Iterate(v).Where(x => test(getter(x)) == keep).ToList();
    }

    static object? Map(object? v, Arguments a)
    {
        if (a.Positional.Count == 0 && a.Keyword.Any(k => k.Name == "attribute"))
        {
            var getter = AttrGetter(a.Get(-1, "attribute"));
            bool hasDefault = a.Has(-1, "default");
            var dflt = a.Get(-1, "default");
            return Py.Iterate(v).Select(x => getter(x) is Undefined && hasDefault ? dflt : getter(x)).ToList();
        }
        if (a.Positional.Count == 0) throw new JinjaError("map requires a filter name or attribute=");
        string name = Py.Str(a.Positional[0]);
        if (!IsKnown(name)) throw new JinjaError($"filter '{name}' is not supported");
        var rest = new Arguments(a.Positional.Skip(1).ToList(), a.Keyword);
        return Py.Iterate(v).Select(x => Apply(name, x, rest)).ToList();
    }

    static Func<object?, object?> SortKey(bool caseSensitive, Func<object?, object?> getter) =>
        x => getter(x) is string s && !caseSensitive ? s.ToLowerInvariant() : getter(x);

    static object? Sort(object? v, Arguments a)
    {
        bool reverse = Py.Truthy(a.Get(0, "reverse", false)), caseSensitive = Py.Truthy(a.Get(1, "case_sensitive", false));
        var getter = a.Get(2, "attribute") is { } attr ? AttrGetter(attr) : (x => x);
        var key = SortKey(caseSensitive, getter);
        var items = ToList(v);
        var sorted = items.Select((x, i) => (x, i)).ToList();
        sorted.Sort((p, q) =>
        {
            int c = Py.Compare(key(p.x), key(q.x));
            if (reverse) c = -c;
            return c != 0 ? c : p.i.CompareTo(q.i);
        });
        return sorted.Select(p => p.x).ToList();
    }

    static object? DictSort(object? v, Arguments a)
    {
        if (v is not JinjaDict d) throw new JinjaError($"dictsort needs a mapping, not {Py.TypeName(v)}");
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        string by = Py.Str(a.Get(1, "by", "key"));
        bool reverse = Py.Truthy(a.Get(2, "reverse", false));
        var key = SortKey(caseSensitive, x => ((PyTuple)x!).Items[by == "value" ? 1 : 0]);
        var pairs = d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();
        var sorted = pairs.Select((x, i) => (x, i)).ToList();
        sorted.Sort((p, q) =>
        {
            int c = Py.Compare(key(p.x), key(q.x));
            if (reverse) c = -c;
            return c != 0 ? c : p.i.CompareTo(q.i);
        });
        return sorted.Select(p => p.x).ToList();
    }

    static object? MinMax(object? v, Arguments a, int sign)
    {
        bool caseSensitive = Py.Truthy(a.Get(0, "case_sensitive", false));
        var getter = a.Get(1, "attribute") is { } attr ? AttrGetter(attr) : (x => x);
        var key = SortKey(caseSensitive, getter);
        object? best = null;
        bool any = false;
        foreach (var x in Py.Iterate(v))
        {
            if (!any || Py.Compare(key(x), key(best)) * sign > 0) best = x;
            any = true;
        }
        return any ? best : new Undefined($"No aggregated item, sequence was empty.");
    }
}
