using System.Text;

namespace Research.Templates;

/// <summary>Variables visible at one point of a render. A for loop's body gets a fresh scope each
/// iteration (so <c>set</c> inside a loop does not leak out, as in jinja2); <c>if</c> does not.</summary>
internal sealed class Scope(Scope? parent)
{
    readonly Dictionary<string, object?> vars = new(StringComparer.Ordinal);
    readonly Scope? parent = parent;

    public object? Lookup(string name)
    {
        for (var s = this; s is not null; s = s.parent)
            if (s.vars.TryGetValue(name, out var v)) return v;
        return Undefined.Named(name);
    }

    public void Set(string name, object? value) => vars[name] = value;
}

/// <summary>Raised by the <c>raise_exception</c> global; the interpreter adds the template name and line.</summary>
internal sealed class RaiseSignal(string message) : Exception(message);

/// <summary>Walks the AST and writes the output. Value errors (<see cref="JinjaError"/>) become
/// <see cref="TemplateException"/>s naming the line of the innermost node that failed.</summary>
internal sealed class Interpreter(string templateName)
{
    enum Flow { Normal, Break, Continue }

    sealed class Macro(string name, MacroNode node, Scope closure, Interpreter interpreter) : ICallable
    {
        public string Name { get; } = name;

        public object? Call(Arguments args)
        {
            var scope = new Scope(closure);
            var ps = node.Parameters;
            if (args.Positional.Count > ps.Count) throw new JinjaError($"macro '{Name}' takes not more than {ps.Count} argument(s)");
            for (int i = 0; i < ps.Count; i++)
            {
                var (pname, pdefault) = ps[i];
                object? value;
                if (i < args.Positional.Count) value = args.Positional[i];
                else if (args.Keyword.Any(k => k.Name == pname)) value = args.Keyword.First(k => k.Name == pname).Value;
                else value = pdefault is null ? Undefined.Named(pname) : interpreter.Eval(pdefault, scope);
                scope.Set(pname, value);
            }
            foreach (var (k, _) in args.Keyword)
                if (!ps.Any(p => p.Name == k)) throw new JinjaError($"macro '{Name}' takes no keyword argument '{k}'");
            var sb = new StringBuilder();
            interpreter.ExecBody(node.Body, scope, sb);
            return sb.ToString();
        }
    }

    TemplateException Wrap(JinjaError e, int line) => new(templateName, line, e.Message);

    public void Render(IReadOnlyList<Node> body, Scope scope, StringBuilder output)
    {
        var flow = ExecBody(body, scope, output);
        if (flow != Flow.Normal) throw new TemplateException(templateName, 1, "'break' or 'continue' outside a for loop");
    }

    Flow ExecBody(IReadOnlyList<Node> body, Scope scope, StringBuilder output)
    {
        foreach (var node in body)
        {
            var flow = Exec(node, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    Flow Exec(Node node, Scope scope, StringBuilder output)
    {
        try
        {
            switch (node)
            {
                case TextNode t: output.Append(t.Text); return Flow.Normal;
                case OutputNode o: output.Append(Py.Str(Eval(o.Value, scope))); return Flow.Normal;
                case IfNode i:
                    foreach (var (test, branch) in i.Branches)
                        if (Py.Truthy(Eval(test, scope))) return ExecBody(branch, scope, output);
                    return ExecBody(i.Else, scope, output);
                case ForNode f: return ExecFor(f, scope, output);
                case SetNode s: ExecSet(s, scope); return Flow.Normal;
                case SetBlockNode sb:
                    {
                        var captured = new StringBuilder();
                        ExecBody(sb.Body, scope, captured);
                        scope.Set(sb.Target, captured.ToString());
                        return Flow.Normal;
                    }
                case MacroNode m: scope.Set(m.Name, new Macro(m.Name, m, scope, this)); return Flow.Normal;
                case GenerationNode g: return ExecBody(g.Body, scope, output);
                case BreakNode: return Flow.Break;
                case ContinueNode: return Flow.Continue;
                default: throw new TemplateException(templateName, node.Line, $"statement {node.GetType().Name} is not supported");
            }
        }
        catch (JinjaError e) { throw Wrap(e, node.Line); }
    }

    static void Bind(IReadOnlyList<string> targets, object? value, Scope scope)
    {
        if (targets.Count == 1) { scope.Set(targets[0], value); return; }
        var items = Py.Iterate(value).ToList();
        if (items.Count != targets.Count)
            throw new JinjaError(items.Count > targets.Count
                ? $"too many values to unpack (expected {targets.Count})"
                : $"not enough values to unpack (expected {targets.Count}, got {items.Count})");
        for (int i = 0; i < targets.Count; i++) scope.Set(targets[i], items[i]);
    }

    Flow ExecFor(ForNode f, Scope scope, StringBuilder output)
    {
        var iterable = Eval(f.Iterable, scope);
        if (iterable is null) throw new TemplateException(templateName, f.Line, "'NoneType' object is not iterable");
        var items = Py.Iterate(iterable).ToList();
        if (f.Filter is not null)
        {
            items = items.Where(item =>
            {
                var s = new Scope(scope);
                Bind(f.Targets, item, s);
                return Py.Truthy(Eval(f.Filter, s));
            }).ToList();
        }
        if (items.Count == 0) return ExecBody(f.Else, scope, output);
        var loop = new LoopInfo(items);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var s = new Scope(scope);
            Bind(f.Targets, items[i], s);
            s.Set("loop", loop);
            if (ExecBody(f.Body, s, output) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    void ExecSet(SetNode s, Scope scope)
    {
        var value = Eval(s.Value, scope);
        if (s.Attribute is null) { Bind(s.Targets, value, scope); return; }
        var target = scope.Lookup(s.Targets[0]);
        if (target is not Namespace ns) throw new JinjaError($"cannot assign attribute on non-namespace object '{s.Targets[0]}'");
        ns.Attributes.Set(s.Attribute, value);
    }

    Arguments EvalArgs(CallArgs args, Scope scope) => new(
        args.Positional.Select(e => Eval(e, scope)).ToList(),
        args.Keyword.Select(k => (k.Name, Eval(k.Value, scope))).ToList());

    public object? Eval(Expr expr, Scope scope)
    {
        try
        {
            return expr switch
            {
                LiteralExpr l => l.Value,
                NameExpr n => scope.Lookup(n.Name),
                ListExpr l => l.Items.Select(e => Eval(e, scope)).ToList(),
                TupleExpr t => new PyTuple(t.Items.Select(e => Eval(e, scope)).ToList()),
                DictExpr d => EvalDict(d, scope),
                AttrExpr a => Py.GetAttr(Eval(a.Target, scope), a.Name),
                ItemExpr { Index: SliceExpr sl } i => Py.Slice(Eval(i.Target, scope), Opt(sl.Start, scope), Opt(sl.Stop, scope), Opt(sl.Step, scope)),
                ItemExpr i => Py.GetItem(Eval(i.Target, scope), Eval(i.Index, scope)),
                CallExpr c => EvalCall(c, scope),
                FilterExpr f => Filters.Apply(f.Name, Eval(f.Target, scope), EvalArgs(f.Args, scope)),
                TestExpr t => IsTests.Apply(t.Name, Eval(t.Target, scope), EvalArgs(t.Args, scope)) != t.Negated,
                BinaryExpr { Op: "and" or "or" } b => EvalLogical(b, scope),
                BinaryExpr b => Py.Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope)),
                UnaryExpr { Op: "not" } u => !Py.Truthy(Eval(u.Operand, scope)),
                UnaryExpr u => Py.Negate(Eval(u.Operand, scope), u.Op == "-"),
                CompareExpr c => EvalCompare(c, scope),
                CondExpr c => Py.Truthy(Eval(c.Test, scope))
                    ? Eval(c.Then, scope)
                    : c.Else is null ? new Undefined("the inline if-expression evaluated to false and no else section was defined") : Eval(c.Else, scope),
                SliceExpr => throw new JinjaError("a slice is only allowed inside []"),
                _ => throw new JinjaError($"expression {expr.GetType().Name} is not supported"),
            };
        }
        catch (JinjaError e) { throw Wrap(e, expr.Line); }
    }

    /// <summary>Python's <c>and</c>/<c>or</c>: short-circuit, yielding an operand, not a bool.</summary>
    object? EvalLogical(BinaryExpr b, Scope scope)
    {
        var left = Eval(b.Left, scope);
        bool truthy = Py.Truthy(left);
        return (b.Op == "and") == truthy ? Eval(b.Right, scope) : left;
    }

    object? Opt(Expr? e, Scope scope) => e is null ? null : Eval(e, scope);

    JinjaDict EvalDict(DictExpr d, Scope scope)
    {
        var dict = new JinjaDict();
        foreach (var (k, v) in d.Items)
        {
            var key = Eval(k, scope);
            if (key is null || key is Undefined || !Py.IsHashable(key)) throw new JinjaError($"unsupported dict key of type '{Py.TypeName(key)}'");
            dict.Set(key, Eval(v, scope));
        }
        return dict;
    }

    object? EvalCall(CallExpr c, Scope scope)
    {
        var callee = Eval(c.Callee, scope);
        var args = EvalArgs(c.Args, scope);
        if (callee is Undefined u) throw u.Fail();
        if (callee is not ICallable f) throw new JinjaError($"'{Py.TypeName(callee)}' object is not callable");
        try { return f.Call(args); }
        catch (RaiseSignal r) { throw new TemplateRaisedException(r.Message, templateName, c.Line); }
    }

    bool EvalCompare(CompareExpr c, Scope scope)
    {
        var left = Eval(c.First, scope);
        foreach (var (op, rightExpr) in c.Rest)
        {
            var right = Eval(rightExpr, scope);
            bool ok = op switch
            {
                "==" => Py.Equal(left, right),
                "!=" => !Py.Equal(left, right),
                "<" => Py.Compare(left, right, op) < 0,
                "<=" => Py.Compare(left, right, op) <= 0,
                ">" => Py.Compare(left, right, op) > 0,
                ">=" => Py.Compare(left, right, op) >= 0,
                "in" => Py.Contains(right, left),
                "not in" => !Py.Contains(right, left),
                _ => throw new JinjaError($"operator '{op}' is not supported"),
            };
            if (!ok) return false;
            left = right;
        }
        return true;
    }
}
