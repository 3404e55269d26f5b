using System.Text;

namespace Research.Templates;

/// <summary>A parsed Jinja2 template (the subset Hugging Face chat templates use), rendered as
/// transformers renders chat templates: jinja2's ImmutableSandboxedEnvironment with trim_blocks and
/// lstrip_blocks, the loopcontrols extension, the <c>{% generation %}</c> tag, its tojson filter and
/// its raise_exception/strftime_now globals. Parsing rejects unsupported constructs up front; every
/// error is a <see cref="TemplateException"/> naming the template and line, except the template's
/// own <c>raise_exception</c>, which is a <see cref="TemplateRaisedException"/>.</summary>
public sealed class JinjaTemplate
{
    readonly IReadOnlyList<Node> body;

    JinjaTemplate(string name, IReadOnlyList<Node> body)
    {
        Name = name;
        this.body = body;
    }

    public string Name { get; }

    /// <summary>Parses <paramref name="source"/>; <paramref name="name"/> is used in error messages
    /// ("template" when null). <paramref name="options"/> defaults to <see cref="TemplateOptions.Transformers"/>.</summary>
    public static JinjaTemplate Parse(string source, string? name = null, TemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        name ??= "template";
        var tokens = Lexer.Tokenize(source, name, options ?? TemplateOptions.Transformers);
        return new JinjaTemplate(name, Parser.Parse(tokens, name));
    }

    /// <summary>Renders with <paramref name="context"/> as the template's variables. Values may be
    /// strings, numbers, bools, null, dictionaries, enumerables, <see cref="ChatMessage"/>s and
    /// <see cref="System.Text.Json.JsonElement"/>s; a name not in the context is undefined.</summary>
    public string Render(IReadOnlyDictionary<string, object?> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var globals = new Scope(null);
        Globals.AddTo(globals);
        foreach (var (k, v) in context) globals.Set(k, ValueConverter.FromClr(v));
        var output = new StringBuilder();
        new Interpreter(Name).Render(body, new Scope(globals), output);
        return output.ToString();
    }
}
