namespace Research.Cli.Commands;

/// <summary>
/// <c>research run [--workspace DIR] SCRIPT.fsx [script args...]</c>: options before the script path
/// belong to <c>run</c>; everything after it belongs to the script (its <c>fsi.CommandLineArgs</c>).
/// </summary>
public static class RunCommand
{
    public const string Usage = "usage: research run [--workspace DIR] SCRIPT.fsx [script args...]";

    /// <summary><paramref name="args"/> may start with "run" (the whole command line) or not.</summary>
    public static int Execute(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var i = args.Length > 0 && args[0] == "run" ? 1 : 0;
        string? workspace = null;
        while (i < args.Length)
        {
            var a = args[i];
            if (a == "--workspace" || a == "-w")
            {
                if (i + 1 >= args.Length) return Fail($"{a} needs a directory");
                workspace = args[i + 1];
                i += 2;
            }
            else if (a.StartsWith("--workspace=", StringComparison.Ordinal))
            {
                workspace = a["--workspace=".Length..];
                i++;
            }
            else if (a is "--help" or "-h")
            {
                Console.Out.WriteLine(Usage);
                return 0;
            }
            else if (a == "--")
            {
                i++;
                break;
            }
            else if (a.StartsWith('-') && a.Length > 1)
            {
                return Fail($"unknown option {a}");
            }
            else break;
        }
        if (i >= args.Length) return Fail("missing script path");

        var script = args[i];
        var scriptArgs = args[(i + 1)..];
        if (workspace is not null)
        {
            if (workspace.Length == 0) return Fail("--workspace needs a directory");
            Environment.SetEnvironmentVariable("RESEARCH_WORKSPACE", Path.GetFullPath(workspace));
        }
        return ScriptHost.Run(script, scriptArgs, Console.Out, Console.Error);
    }

    static int Fail(string message)
    {
        Console.Error.WriteLine($"research run: {message}");
        Console.Error.WriteLine(Usage);
        return 2;
    }
}
