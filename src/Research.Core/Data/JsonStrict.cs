using System.Text.Json;

namespace Research.Data;

/// <summary>
/// How config files are parsed: a key given twice is malformed JSON (a JsonException the readers turn into an error naming
/// the file), not an ArgumentException from the first lookup that builds the object's dictionary. Found by ReliabilityFuzz.
/// </summary>
public static class JsonStrict
{
    public static readonly JsonDocumentOptions NoDuplicates = new() { AllowDuplicateProperties = false };
}
