using System.Reflection;

namespace Research.Util;

/// <summary>
/// Non-destructive mutation of C# records for languages without <c>with</c> on them (the F# DSL):
/// clones through the compiler's copy constructor and sets one init-only property.
/// </summary>
public static class RecordCopy
{
    public static T With<T>(T record, string property, object? value) where T : class
    {
        var type = record.GetType();
        var clone = type.GetMethod("<Clone>$", BindingFlags.Public | BindingFlags.Instance)
            ?? throw new ArgumentException($"{type.Name} is not a record");
        var copy = (T)clone.Invoke(record, null)!;
        var prop = type.GetProperty(property, BindingFlags.Public | BindingFlags.Instance)
            ?? throw new ArgumentException($"{type.Name} has no property '{property}'");
        prop.SetValue(copy, value);
        return copy;
    }
}
