namespace Research.Templates;

/// <summary>jinja2's tests, used as <c>x is name</c>, <c>x is not name(arg)</c>, and by the
/// select/reject/selectattr/rejectattr filters.</summary>
internal static class IsTests
{
    delegate bool Test(object? value, Arguments args);

    static object? Arg(Arguments a, string test) =>
        a.Has(0, "other") ? a.Get(0, "other") : throw new JinjaError($"test '{test}' needs an argument");

    static readonly Dictionary<string, Test> All = new()
    {
        ["defined"] = (v, _) => v is not Undefined,
        ["undefined"] = (v, _) => v is Undefined,
        ["none"] = (v, _) => v is null,
        ["true"] = (v, _) => v is true,
        ["false"] = (v, _) => v is false,
        ["boolean"] = (v, _) => v is bool,
        ["string"] = (v, _) => v is string,
        ["mapping"] = (v, _) => v is JinjaDict,
        ["number"] = (v, _) => v is long or double or bool,
        ["integer"] = (v, _) => v is long,
        ["float"] = (v, _) => v is double,
        ["iterable"] = (v, _) => v is string or List<object?> or PyTuple or JinjaDict or Undefined,
        ["sequence"] = (v, _) => v is string or List<object?> or PyTuple or JinjaDict or Undefined,
        ["callable"] = (v, _) => v is ICallable,
        ["even"] = (v, _) => Integer(v, "even") % 2 == 0,
        ["odd"] = (v, _) => Integer(v, "odd") % 2 != 0,
        ["divisibleby"] = (v, a) => Integer(v, "divisibleby") % Integer(Arg(a, "divisibleby"), "divisibleby") == 0,
        ["lower"] = (v, _) => Py.Str(v) is var s && s == s.ToLowerInvariant(),
        ["upper"] = (v, _) => Py.Str(v) is var s && s == s.ToUpperInvariant(),
        ["sameas"] = (v, a) => Arg(a, "sameas") is var o && (v is null || v is bool ? Py.Equal(v, o) && v?.GetType() == o?.GetType() : ReferenceEquals(v, o)),
        ["in"] = (v, a) => Py.Contains(Arg(a, "in"), v),
        ["eq"] = (v, a) => Py.Equal(v, Arg(a, "eq")),
        ["ne"] = (v, a) => !Py.Equal(v, Arg(a, "ne")),
        ["lt"] = (v, a) => Py.Compare(v, Arg(a, "lt"), "<") < 0,
        ["le"] = (v, a) => Py.Compare(v, Arg(a, "le"), "<=") <= 0,
        ["gt"] = (v, a) => Py.Compare(v, Arg(a, "gt"), ">") > 0,
        ["ge"] = (v, a) => Py.Compare(v, Arg(a, "ge"), ">=") >= 0,
    };

    static readonly Dictionary<string, string> Aliases = new()
    {
        ["equalto"] = "eq", ["=="] = "eq", ["!="] = "ne", ["lessthan"] = "lt", ["<"] = "lt", ["<="] = "le",
        ["greaterthan"] = "gt", [">"] = "gt", [">="] = "ge",
    };

    static long Integer(object? v, string test) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d when d == Math.Floor(d) => (long)d,
        Undefined u => throw u.Fail(),
        _ => throw new JinjaError($"test '{test}' needs an integer, not {Py.TypeName(v)}"),
    };

    public static bool IsKnown(string name) => All.ContainsKey(name) || Aliases.ContainsKey(name);

    public static bool Apply(string name, object? value, Arguments args)
    {
        if (Aliases.TryGetValue(name, out var real)) name = real;
        if (!All.TryGetValue(name, out var test)) throw new JinjaError($"test '{name}' is not supported");
        return test(value, args);
    }
}
