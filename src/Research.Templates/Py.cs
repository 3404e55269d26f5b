using System.Text;

namespace Research.Templates;

/// <summary>Python semantics of the values: truthiness, equality and ordering, arithmetic, membership,
/// iteration, len(), attribute and item access as jinja2's sandboxed environment performs them.</summary>
internal static partial class Py
{
    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        string => "str",
        bool => "bool",
        long => "int",
        double => "float",
        List<object?> => "list",
        PyTuple => "tuple",
        JinjaDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopInfo => "LoopContext",
        ICallable => "function",
        _ => v.GetType().Name,
    };

    public static bool Truthy(object? v) => v switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        PyTuple t => t.Items.Count > 0,
        JinjaDict d => d.Count > 0,
        _ => true,
    };

    static bool IsNumber(object? v) => v is long or double or bool;
    static double ToDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw new InvalidOperationException() };
    static long ToLong(object? v) => v switch { long l => l, bool b => b ? 1 : 0, _ => throw new InvalidOperationException() };
    static bool IsInt(object? v) => v is long or bool;

    public static bool Equal(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (IsNumber(a) && IsNumber(b))
            return IsInt(a) && IsInt(b) ? ToLong(a) == ToLong(b) : ToDouble(a) == ToDouble(b);
        if (a is string sa) return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
        if (a is List<object?> la) return b is List<object?> lb && SequenceEqual(la, lb);
        if (a is PyTuple ta) return b is PyTuple tb && SequenceEqual(ta.Items, tb.Items);
        if (a is JinjaDict da)
        {
            if (b is not JinjaDict db || da.Count != db.Count) return false;
            foreach (var (k, v) in da)
                if (!db.TryGet(k, out var w) || !Equal(v, w)) return false;
            return true;
        }
        return ReferenceEquals(a, b) || a.Equals(b);
    }

    static bool SequenceEqual(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        if (a.Count != b.Count) return false;
        for (int i = 0; i < a.Count; i++) if (!Equal(a[i], b[i])) return false;
        return true;
    }

    /// <summary>Ordering for <c>&lt; &lt;= &gt; &gt;=</c> and sort: numbers, strings (by code point),
    /// lists and tuples (lexicographically).</summary>
    public static int Compare(object? a, object? b, string op = "<")
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        if (IsNumber(a) && IsNumber(b))
            return IsInt(a) && IsInt(b) ? ToLong(a).CompareTo(ToLong(b)) : ToDouble(a).CompareTo(ToDouble(b));
        if (a is string sa && b is string sb) return Math.Sign(string.CompareOrdinal(sa, sb));
        if (AsList(a) is { } la && AsList(b) is { } lb && a?.GetType() == b?.GetType())
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
                if (!Equal(la[i], lb[i])) return Compare(la[i], lb[i], op);
            return la.Count.CompareTo(lb.Count);
        }
        throw new JinjaError($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    static IReadOnlyList<object?>? AsList(object? v) => v switch
    {
        List<object?> l => l,
        PyTuple t => t.Items,
        _ => null,
    };

    static JinjaError Unsupported(string op, object? a, object? b)
    {
        if (a is Undefined ua) return ua.Fail();
        if (b is Undefined ub) return ub.Fail();
        if (op == "+" && a is string) return new JinjaError($"can only concatenate str (not \"{TypeName(b)}\") to str");
        if (op == "+" && a is List<object?>) return new JinjaError($"can only concatenate list (not \"{TypeName(b)}\") to list");
        return new JinjaError($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
    }

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~") return Str(a) + Str(b);
        if (IsNumber(a) && IsNumber(b))
        {
            bool ints = IsInt(a) && IsInt(b);
            switch (op)
            {
                case "+": return ints ? (object)(ToLong(a) + ToLong(b)) : ToDouble(a) + ToDouble(b);
                case "-": return ints ? (object)(ToLong(a) - ToLong(b)) : ToDouble(a) - ToDouble(b);
                case "*": return ints ? (object)(ToLong(a) * ToLong(b)) : ToDouble(a) * ToDouble(b);
                case "/":
                    if (ToDouble(b) == 0) throw new JinjaError("division by zero");
                    return ToDouble(a) / ToDouble(b);
                case "//":
                    if (ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                    if (ints) { long x = ToLong(a), y = ToLong(b), q = x / y; return (x % y != 0 && (x < 0) != (y < 0)) ? (object)(q - 1) : q; }
                    return Math.Floor(ToDouble(a) / ToDouble(b));
                case "%":
                    if (ToDouble(b) == 0) throw new JinjaError("integer division or modulo by zero");
                    if (ints) { long x = ToLong(a), y = ToLong(b), r = x % y; return (r != 0 && (r < 0) != (y < 0)) ? r + y : r; }
                    {
                        double x = ToDouble(a), y = ToDouble(b), r = x % y;
                        return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;
                    }
                case "**":
                    if (ints && ToLong(b) >= 0)
                    {
                        long result = 1, bas = ToLong(a);
                        for (long e = ToLong(b); e > 0; e--) result *= bas;
                        return result;
                    }
                    return Math.Pow(ToDouble(a), ToDouble(b));
            }
        }
        switch (op)
        {
            case "+" when a is string sa && b is string sb: return sa + sb;
            case "+" when a is List<object?> la && b is List<object?> lb: return la.Concat(lb).ToList();
            case "+" when a is PyTuple ta && b is PyTuple tb: return new PyTuple(ta.Items.Concat(tb.Items).ToList());
            case "*" when IsInt(b) && (a is string || AsList(a) is not null): return Repeat(a, ToLong(b));
            case "*" when IsInt(a) && (b is string || AsList(b) is not null): return Repeat(b, ToLong(a));
            case "%" when a is string: throw new JinjaError("printf-style string formatting ('%' on a string) is not supported");
        }
        throw Unsupported(op, a, b);
    }

    static object Repeat(object? v, long n)
    {
        if (v is string s) return n <= 0 ? "" : new StringBuilder().Insert(0, s, (int)n).ToString();
        var items = AsList(v)!;
        var result = new List<object?>();
        for (long i = 0; i < n; i++) result.AddRange(items);
        return v is PyTuple ? new PyTuple(result) : result;
    }

    public static object? Negate(object? v, bool minus) => v switch
    {
        long l => (object)(minus ? -l : l),
        bool b => (object)(minus ? -(b ? 1L : 0L) : (b ? 1L : 0L)),
        double d => minus ? -d : d,
        Undefined u => throw u.Fail(),
        _ => throw new JinjaError($"bad operand type for unary {(minus ? "-" : "+")}: '{TypeName(v)}'"),
    };

    public static bool Contains(object? container, object? item) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new JinjaError($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        JinjaDict d => item is not null && IsHashable(item) && d.ContainsKey(item),
        Namespace ns => throw new JinjaError("argument of type 'Namespace' is not iterable"),
        _ => Iterate(container).Any(x => Equal(x, item)),
    };

    public static bool IsHashable(object? v) => v is not (List<object?> or JinjaDict or Namespace);

    /// <summary>Python iteration: list/tuple items, a string's characters, a dict's keys; an undefined
    /// value iterates as empty.</summary>
    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        List<object?> l => l,
        PyTuple t => t.Items,
        string s => Chars(s),
        JinjaDict d => d.Keys.Cast<object?>(),
        Undefined => Array.Empty<object?>(),
        _ => throw new JinjaError($"'{TypeName(v)}' object is not iterable"),
    };

    /// <summary>A string as Python sees it: a sequence of code points (each a string here).</summary>
    public static List<object?> Chars(string s)
    {
        var result = new List<object?>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { result.Add(s.Substring(i, 2)); i++; }
            else result.Add(s[i].ToString());
        }
        return result;
    }

    static bool HasSurrogates(string s)
    {
        foreach (char c in s) if (char.IsSurrogate(c)) return true;
        return false;
    }

    public static long Length(object? v) => v switch
    {
        string s => HasSurrogates(s) ? Chars(s).Count : s.Length,
        List<object?> l => l.Count,
        PyTuple t => t.Items.Count,
        JinjaDict d => d.Count,
        Namespace => throw new JinjaError("object of type 'Namespace' has no len()"),
        Undefined => 0,
        _ => throw new JinjaError($"object of type '{TypeName(v)}' has no len()"),
    };

    /// <summary>jinja2's <c>environment.getattr</c>: an attribute (here: a method of str/dict/list, a
    /// namespace or loop attribute), else the item of that name, else undefined.</summary>
    public static object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined u: throw u.Fail();
            case Namespace ns: return ns.Attributes.TryGet(name, out var nv) ? nv : Undefined.Attribute(obj, name);
            case LoopInfo loop: return loop.Get(name);
            case JinjaDict d:
                if (Methods.Find(d, name) is { } dm) return dm;
                return d.TryGet(name, out var dv) ? dv : Undefined.Attribute(obj, name);
            default:
                return (object?)Methods.Find(obj, name) ?? Undefined.Attribute(obj, name);
        }
    }

    /// <summary>jinja2's <c>environment.getitem</c>: <c>obj[key]</c>, falling back to the attribute when
    /// the key is a string; a missing key or an index out of range gives undefined.</summary>
    public static object? GetItem(object? obj, object? key)
    {
        if (obj is Undefined u) throw u.Fail();
        if (key is Undefined uk) throw uk.Fail();
        switch (obj)
        {
            case JinjaDict d:
                if (key is not null && IsHashable(key) && d.TryGet(key, out var v)) return v;
                break;
            case List<object?> or PyTuple or string when key is long or bool:
                {
                    var items = obj is string s ? Chars(s) : AsList(obj)!;
                    long i = ToLong(key);
                    if (i < 0) i += items.Count;
                    if (i >= 0 && i < items.Count) return items[(int)i];
                    return new Undefined($"{TypeName(obj)} index out of range");
                }
        }
        if (key is string name) return GetAttr(obj, name);
        if (obj is JinjaDict) return new Undefined($"'dict object' has no attribute {Repr(key)}");
        if (obj is List<object?> or PyTuple or string) throw new JinjaError($"{TypeName(obj)} indices must be integers or slices, not {TypeName(key)}");
        return new Undefined($"'{TypeName(obj)} object' has no attribute {Repr(key)}");
    }

    /// <summary>Python slicing <c>obj[start:stop:step]</c> of a list, tuple or string.</summary>
    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        if (obj is Undefined u) throw u.Fail();
        IReadOnlyList<object?> items = obj switch
        {
            string s => Chars(s),
            List<object?> l => l,
            PyTuple t => t.Items,
            _ => throw new JinjaError($"'{TypeName(obj)}' object is not subscriptable"),
        };
        long n = items.Count;
        long st = step is null ? 1 : IsInt(step) ? ToLong(step) : throw new JinjaError("slice indices must be integers or None");
        if (st == 0) throw new JinjaError("slice step cannot be zero");
        long Bound(object? v, long dflt)
        {
            if (v is null) return dflt;
            if (!IsInt(v)) throw new JinjaError("slice indices must be integers or None");
            long x = ToLong(v);
            if (x < 0) x += n;
            return st > 0 ? Math.Clamp(x, 0, n) : Math.Clamp(x, -1, n - 1);
        }
        long a = Bound(start, st > 0 ? 0 : n - 1), b = Bound(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        if (st > 0) for (long i = a; i < b; i += st) result.Add(items[(int)i]);
        else for (long i = a; i > b; i += st) result.Add(items[(int)i]);
        return obj switch
        {
            string => string.Concat(result.Cast<string>()),
            PyTuple => new PyTuple(result),
            _ => result,
        };
    }
}
