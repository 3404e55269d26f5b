using System.Collections;

namespace Research.Templates;

// The runtime value model, mirroring what jinja2 sees in Python:
//   string (str), long (int), double (float), bool, null (None), Undefined,
//   List<object?> (list), PyTuple (tuple), JinjaDict (dict, insertion-ordered),
//   Namespace (jinja2's namespace()), ICallable (functions, methods, macros), LoopInfo (loop).

/// <summary>jinja2's default Undefined: prints as "", is falsy, iterates as empty and has length 0;
/// taking an attribute or item of it, calling it or doing arithmetic with it is an error.</summary>
internal sealed class Undefined(string description)
{
    /// <summary>jinja2's wording for the error when it is used: "'x' is undefined" or
    /// "'dict object' has no attribute 'x'".</summary>
    public string Description { get; } = description;

    public static Undefined Named(string name) => new($"'{name}' is undefined");

    public static Undefined Attribute(object? owner, string attribute) =>
        new($"'{Py.TypeName(owner)} object' has no attribute '{attribute}'");

    public JinjaError Fail() => new(Description);
}

/// <summary>A Python dict: keys compared with Python equality, iteration in insertion order.</summary>
internal sealed class JinjaDict : IEnumerable<KeyValuePair<object, object?>>
{
    readonly Dictionary<object, object?> map = new(PyKeyComparer.Instance);
    readonly List<object> order = [];

    public int Count => order.Count;
    public IEnumerable<object> Keys => order;

    public void Set(object key, object? value)
    {
        if (!map.ContainsKey(key)) order.Add(key);
        map[key] = value;
    }

    public bool TryGet(object key, out object? value) => map.TryGetValue(key, out value);
    public bool ContainsKey(object key) => map.ContainsKey(key);

    public IEnumerator<KeyValuePair<object, object?>> GetEnumerator()
    {
        foreach (var k in order) yield return new(k, map[k]);
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>Key equality as Python's: 1, 1.0 and True are the same key; strings by ordinal.</summary>
internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();
    public new bool Equals(object? x, object? y) => Py.Equal(x, y);

    public int GetHashCode(object obj) => obj switch
    {
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        double d when d == Math.Floor(d) && Math.Abs(d) < 9e18 => ((long)d).GetHashCode(),
        string s => StringComparer.Ordinal.GetHashCode(s),
        _ => obj.GetHashCode(),
    };
}

/// <summary>A Python tuple (prints with parentheses, otherwise a read-only list).</summary>
internal sealed class PyTuple(IReadOnlyList<object?> items)
{
    public IReadOnlyList<object?> Items { get; } = items;
}

/// <summary>jinja2's <c>namespace(...)</c>: the one object a template may assign attributes on
/// (<c>{% set ns.x = ... %}</c>), so that values survive the scope of a for loop.</summary>
internal sealed class Namespace
{
    public JinjaDict Attributes { get; } = new();
}

/// <summary>A value that templates can call: a global function, a filter-like method bound to its
/// receiver, or a macro.</summary>
internal interface ICallable
{
    string Name { get; }
    object? Call(Arguments args);
}

/// <summary>Evaluated call arguments, with Python-like binding helpers.</summary>
internal sealed class Arguments(IReadOnlyList<object?> positional, IReadOnlyList<(string Name, object? Value)> keyword)
{
    public static readonly Arguments None = new([], []);
    public IReadOnlyList<object?> Positional { get; } = positional;
    public IReadOnlyList<(string Name, object? Value)> Keyword { get; } = keyword;

    /// <summary>The argument at <paramref name="position"/> or named <paramref name="name"/>, or
    /// <paramref name="fallback"/> when neither was given.</summary>
    public object? Get(int position, string name, object? fallback = null)
    {
        foreach (var (n, v) in Keyword) if (n == name) return v;
        return position >= 0 && position < Positional.Count ? Positional[position] : fallback;
    }

    public bool Has(int position, string name) =>
        (position >= 0 && position < Positional.Count) || Keyword.Any(k => k.Name == name);

    /// <summary>Rejects more positional arguments than <paramref name="max"/> or a keyword not in
    /// <paramref name="names"/>, as Python would with a TypeError.</summary>
    public void Check(string function, int max, params string[] names)
    {
        if (Positional.Count > max) throw new JinjaError($"{function}() takes at most {max} positional argument{(max == 1 ? "" : "s")} ({Positional.Count} given)");
        foreach (var (n, _) in Keyword)
            if (!names.Contains(n)) throw new JinjaError($"{function}() got an unexpected keyword argument '{n}'");
    }
}

internal sealed class BuiltinFunction(string name, Func<Arguments, object?> body) : ICallable
{
    public string Name { get; } = name;
    public object? Call(Arguments args) => body(args);
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopInfo(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }
    public IReadOnlyList<object?> Items { get; } = items;

    public object? Get(string attribute) => attribute switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 < Items.Count - 1 ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", a =>
            a.Positional.Count == 0 ? throw new JinjaError("no items for cycling given") : a.Positional[Index0 % a.Positional.Count]),
        _ => Undefined.Attribute(this, attribute),
    };
}
