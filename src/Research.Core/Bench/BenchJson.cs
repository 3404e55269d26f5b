using System.Text.Json;
using System.Text.Json.Serialization;

namespace Research.Bench;

/// <summary>The bench's JSON: snake_case keys, NaN written as "NaN" (a measurement that was not applicable).</summary>
public static class BenchJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = false,
    };
}
