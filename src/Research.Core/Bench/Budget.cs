using System.Diagnostics;

namespace Research.Bench;

/// <summary>How a measurement used its time: its budget, the seconds it took, and whether it stopped early because the budget was spent.</summary>
public sealed record BudgetUse(string Measurement, double BudgetSeconds, double Seconds, bool CutShort, string? Note = null);

/// <summary>
/// The time one measurement may take. Loops over rounds, repeats or methods ask <see cref="Another"/> before each
/// iteration after the first (<paramref name="minimum"/> always run), so a slow machine measures less instead of
/// running for an hour; the report says which measurements were cut short.
/// </summary>
public sealed class Budget(string measurement, double seconds)
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    bool _cut;

    public double Elapsed => _clock.Elapsed.TotalSeconds;
    public bool Spent => Elapsed >= seconds;

    /// <summary>True while fewer than <paramref name="minimum"/> iterations ran, or the budget is not spent; notes a cut.</summary>
    public bool Another(int done, int wanted, int minimum = 1)
    {
        if (done >= wanted) return false;
        if (done < minimum || !Spent) return true;
        _cut = true;
        return false;
    }

    public BudgetUse Use(string? note = null) => new(measurement, seconds, Elapsed, _cut, note);
}
