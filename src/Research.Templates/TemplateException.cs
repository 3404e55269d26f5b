namespace Research.Templates;

/// <summary>A template that is malformed, uses a construct this engine does not support, or fails while
/// rendering. The message names the template, the line and the construct:
/// "chat_template line 3: filter 'xmlattr' is not supported".</summary>
public class TemplateException : Exception
{
    public TemplateException(string templateName, int line, string detail)
        : base($"{templateName} line {line}: {detail}")
    {
        TemplateName = templateName;
        Line = line;
        Detail = detail;
    }

    public string TemplateName { get; }
    public int Line { get; }
    public string Detail { get; }
}

/// <summary>The template itself called <c>raise_exception(message)</c> (as chat templates do for a bad
/// role or a broken user/assistant alternation). <see cref="Exception.Message"/> is the template's own
/// message, exactly as jinja2's TemplateError carries it under transformers.</summary>
public sealed class TemplateRaisedException : Exception
{
    public TemplateRaisedException(string message, string templateName, int line) : base(message)
    {
        TemplateName = templateName;
        Line = line;
    }

    public string TemplateName { get; }
    public int Line { get; }
}

/// <summary>A runtime error raised by value operations, which know no line; the interpreter turns it
/// into a <see cref="TemplateException"/> at the node that failed.</summary>
internal sealed class JinjaError(string message) : Exception(message);
