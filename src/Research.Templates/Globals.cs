using System.Globalization;
using System.Text;

namespace Research.Templates;

/// <summary>The global functions of transformers' chat template environment: jinja2's
/// <c>range</c>, <c>namespace</c> and <c>dict</c>, and transformers' <c>raise_exception(message)</c>
/// and <c>strftime_now(format)</c>.</summary>
internal static class Globals
{
    const long MaxRange = 100_000; // jinja2's sandbox limit

    public static void AddTo(Scope scope)
    {
        scope.Set("range", new BuiltinFunction("range", Range));
        scope.Set("namespace", new BuiltinFunction("namespace", NewNamespace));
        scope.Set("dict", new BuiltinFunction("dict", a =>
        {
            var d = new JinjaDict();
            foreach (var (k, v) in a.Keyword) d.Set(k, v);
            return d;
        }));
        scope.Set("raise_exception", new BuiltinFunction("raise_exception", a => throw new RaiseSignal(Py.Str(a.Get(0, "message")))));
        scope.Set("strftime_now", new BuiltinFunction("strftime_now", a => Strftime(DateTime.Now, Py.Str(a.Get(0, "format")))));
    }

    static object? Range(Arguments a)
    {
        var ints = a.Positional.Select(v => v is long l ? l : v is bool b ? (b ? 1 : 0) : throw new JinjaError($"'{Py.TypeName(v)}' object cannot be interpreted as an integer")).ToList();
        var (start, stop, step) = ints.Count switch
        {
            1 => (0L, ints[0], 1L),
            2 => (ints[0], ints[1], 1L),
            3 => (ints[0], ints[1], ints[2]),
            _ => throw new JinjaError($"range expected 1 to 3 arguments, got {ints.Count}"),
        };
        if (step == 0) throw new JinjaError("range() arg 3 must not be zero");
        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (result.Count >= MaxRange) throw new JinjaError($"range too big, the sandbox allows at most {MaxRange} items");
            result.Add(i);
        }
        return result;
    }

    static object? NewNamespace(Arguments a)
    {
        var ns = new Namespace();
        foreach (var p in a.Positional)
        {
            if (p is not JinjaDict d) throw new JinjaError("namespace() takes keyword arguments or a dict");
            foreach (var (k, v) in d) ns.Attributes.Set(k, v);
        }
        foreach (var (k, v) in a.Keyword) ns.Attributes.Set(k, v);
        return ns;
    }

    /// <summary>Python's <c>datetime.now().strftime(format)</c> for the common directives (C locale).</summary>
    public static string Strftime(DateTime t, string format)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            sb.Append(c switch
            {
                'a' => t.ToString("ddd", inv),
                'A' => t.ToString("dddd", inv),
                'b' or 'h' => t.ToString("MMM", inv),
                'B' => t.ToString("MMMM", inv),
                'd' => t.ToString("dd", inv),
                'e' => t.Day.ToString(inv).PadLeft(2),
                'm' => t.ToString("MM", inv),
                'y' => t.ToString("yy", inv),
                'Y' => t.Year.ToString(inv),
                'H' => t.ToString("HH", inv),
                'I' => t.ToString("hh", inv),
                'M' => t.ToString("mm", inv),
                'S' => t.ToString("ss", inv),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => t.DayOfYear.ToString("000", inv),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv),
                'w' => ((int)t.DayOfWeek).ToString(inv),
                'F' => t.ToString("yyyy-MM-dd", inv),
                'T' => t.ToString("HH:mm:ss", inv),
                '%' => "%",
                _ => throw new JinjaError($"strftime directive '%{c}' is not supported"),
            });
        }
        return sb.ToString();
    }
}
