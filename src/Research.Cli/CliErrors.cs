using System.Data.Common;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Research.Cli;

/// <summary>
/// How <c>research</c> ends on an expected failure: one line on stderr ("research: ..."), exit 2 for a usage error,
/// 1 for the rest (bad input, a corrupt file or store, a native error, I/O). Anything else is a bug: its stack trace.
/// </summary>
public static class CliErrors
{
    /// <summary>
    /// Research.Data.CorpusException, found by name: C# cannot name the namespace Research.Data here, where the F# module
    /// Research.Data (Research.FSharp) hides it.
    /// </summary>
    static readonly Type CorpusException =
        typeof(Research.Models.Checkpoint).Assembly.GetType("Research.Data.CorpusException", throwOnError: true)!;

    /// <summary>Writes the line and returns the exit code; null when <paramref name="e"/> is not an expected failure.</summary>
    public static int? Report(Exception e, TextWriter err)
    {
        ArgumentNullException.ThrowIfNull(e);
        ArgumentNullException.ThrowIfNull(err);
        while (e is AggregateException { InnerExceptions.Count: 1 } or System.Reflection.TargetInvocationException or TypeInitializationException
               && e.InnerException is not null)
            e = e.InnerException!;
        var (code, what) = e switch
        {
            CliException => (2, e.Message),
            DbException => (1, $"run store error: {OneLine(e.Message)}"),
            JsonException j => (1, $"invalid JSON{(j.Path is { Length: > 0 } p ? $" at {p}" : "")}: {OneLine(j.Message)}"),
            ExternalException => (1, $"native error: {OneLine(e.Message)}"),
            InvalidDataException or FileNotFoundException or DirectoryNotFoundException or IOException or UnauthorizedAccessException
                or Research.Training.TrainingDivergedException or ArgumentException or InvalidOperationException or FormatException
                or NotSupportedException or Research.Models.SafetensorsException
                or Research.Templates.TemplateException or Research.Templates.TemplateRaisedException
                or InsufficientExecutionStackException or OutOfMemoryException => (1, e.Message),
            _ when e.GetType() == CorpusException => (1, e.Message),
            _ => (0, ""),
        };
        if (code == 0) return null;
        err.WriteLine($"research: {what}");
        return code;
    }

    /// <summary>Native and database messages can span lines (libtorch appends a C++ backtrace): the first line says it.</summary>
    static string OneLine(string message)
    {
        var cut = message.IndexOfAny(['\r', '\n']);
        return cut < 0 ? message : message[..cut];
    }
}
