namespace Research.Pipelines;

/// <summary>
/// The version of the code that produces each built-in kind of stage. It is part of every stage key, so a change to a
/// loss, a merge rule or the training loop that changes what a stage writes gets new keys for its stages and their
/// descendants, which then re-run instead of being reused from a workspace trained by the old code.
/// <para>tests/Research.Tests/StageCodeTests.fs holds, per kind, the digest of the source files that determine its
/// output (tests/Research.Tests/fixtures/stage-code.json) and fails when they change while the digest recorded there does
/// not: whoever changes them bumps the kind's version here when outputs change (a pure refactor may keep it) and
/// records the new digest. Kinds registered from outside (<see cref="Executor.Register"/>) have version 0.</para>
/// </summary>
public static class StageCode
{
    public static IReadOnlyDictionary<string, int> Versions { get; } = new Dictionary<string, int>
    {
        ["pretrain"] = 2,
        ["adapt"] = 2,
        ["checkpoint"] = 1,
        ["tune"] = 2,
        ["align"] = 2,
        ["distill"] = 2,
        ["merge"] = 1,
        ["doremi"] = 2,
        ["grpo"] = 2,
        ["online_dpo"] = 1,
        ["classify"] = 1,
        ["uda"] = 1,
        ["tent"] = 1,
        ["reward"] = 1,
        ["pairs"] = 1,
    };

    public static int Version(string kind) => Versions.GetValueOrDefault(kind, 0);
}
