using System.Diagnostics;

namespace Research.Runs;

/// <summary>
/// The git commit of a directory's repository and whether its working tree has uncommitted changes, asked of the
/// <c>git</c> command. Every field is "unknown" when there is no repository there or no git on the machine.
/// </summary>
public sealed record GitInfo(string Commit, string Dirty, string Repository)
{
    public const string Unknown = "unknown";

    public static GitInfo Of(string directory)
    {
        if (!Directory.Exists(directory)) return new(Unknown, Unknown, Unknown);
        var root = Git(directory, "rev-parse", "--show-toplevel");
        var commit = root is null ? null : Git(directory, "rev-parse", "HEAD");
        if (root is null || commit is null) return new(Unknown, Unknown, root ?? Unknown);
        // Untracked files count: a figure made by a script that is not committed yet cannot be traced to a commit.
        var status = Git(directory, "status", "--porcelain");
        return new(commit, status is null ? Unknown : status.Length > 0 ? "true" : "false", root);
    }

    /// <summary>git's trimmed stdout, or null when git is missing, fails or takes more than 10 s.</summary>
    static string? Git(string directory, params string[] args)
    {
        var psi = new ProcessStartInfo("git") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["GIT_OPTIONAL_LOCKS"] = "0";   // `git status` must not take the index lock another git holds
        try
        {
            using var p = Process.Start(psi);
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(10_000)) { p.Kill(true); return null; }
            return p.ExitCode == 0 ? output.Result.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }   // no git on PATH
    }
}
