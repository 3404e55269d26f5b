namespace Research.Models;

/// <summary>One-field updates for callers without C#'s <c>with</c> (the F# DSL).</summary>
public sealed partial record LoraOptions
{
    public LoraOptions WithTargetModules(params string[] modules) => this with { TargetModules = modules };
    public LoraOptions WithDropout(double dropout) => this with { Dropout = dropout };
}
