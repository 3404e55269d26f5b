using System.Text.Json;

namespace Research.Data;

/// <summary>
/// Format constraints checked by rule, as IFEval verifies instructions ("Instruction-Following Evaluation for Large
/// Language Models", Zhou et al. 2023): the check reads only the response's form, never whether its content is true.
/// The response is the generated text with surrounding whitespace removed.
/// </summary>
public static class FormatRules
{
    public const string OneWord = "one_word";
    public const string Uppercase = "uppercase";
    public const string EndsWithPeriod = "ends_with_period";
    public const string Json = "json";

    public static readonly string[] All = [OneWord, Uppercase, EndsWithPeriod, Json];

    /// <summary>
    /// one_word: one run of letters, digits, '-' or '\'' (no space); uppercase: at least one letter and no lower-case
    /// letter; ends_with_period: at least two words and a final '.'; json: one JSON object with a property <paramref name="key"/>.
    /// </summary>
    public static bool Check(string constraint, string? key, string response)
    {
        var s = response.Trim();
        switch (constraint)
        {
            case OneWord:
                return s.Length > 0 && s.All(ch => char.IsLetterOrDigit(ch) || ch is '-' or '\'');
            case Uppercase:
                return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            case EndsWithPeriod:
                return s.EndsWith('.') && s.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length >= 2;
            case Json:
                if (key is null) throw new ArgumentException("format rule json needs a key");
                try
                {
                    using var doc = JsonDocument.Parse(s);
                    return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(key, out _);
                }
                catch (JsonException)
                {
                    return false;
                }
            default:
                throw new ArgumentException($"unknown format constraint \"{constraint}\" (known: {string.Join(", ", All)})");
        }
    }
}
