using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using FSharp.Compiler.Diagnostics;
using FSharp.Compiler.Interactive;
using Microsoft.FSharp.Core;
using Research.Backend;

namespace Research.Cli;

/// <summary>
/// Runs an F# script inside this process with FSharp.Compiler.Service, so the script shares the
/// host's Research assemblies, FSharp.Core 10.1.404 and already-started torch. Scripts can tell they
/// are hosted by the symbol RESEARCH_HOST (scripts/research.fsx skips its #r lines under it).
/// </summary>
public static class ScriptHost
{
    /// <summary>The symbol defined for hosted scripts.</summary>
    public const string HostSymbol = "RESEARCH_HOST";

    // FCS sessions share compiler globals and the process's Console: one evaluation at a time.
    static readonly object Gate = new();

    /// <summary>
    /// Evaluates <paramref name="scriptPath"/> with <c>fsi.CommandLineArgs</c> = [script; args...].
    /// Returns 0 on success, 1 on a compile error or a runtime exception (reported to
    /// <paramref name="error"/>), 2 when the script does not exist.
    /// </summary>
    public static int Run(string scriptPath, IReadOnlyList<string> scriptArgs, TextWriter output, TextWriter error)
    {
        using var session = new Session();
        return session.Run(scriptPath, scriptArgs, output, error);
    }

    /// <summary>
    /// One compiler session kept warm: the first evaluation pays for starting FSharp.Compiler.Service and
    /// loading the Research assemblies, every later one only for compiling the script again (what
    /// <c>research run --watch</c> does on each save). Evaluations are serialised.
    /// </summary>
    public sealed class Session : IDisposable
    {
        readonly StringWriter _fsiOut = new();
        readonly StringWriter _fsiErr = new();
        Shell.FsiEvaluationSession? _session;

        /// <summary>
        /// Evaluates <paramref name="scriptPath"/> with <c>fsi.CommandLineArgs</c> = [script; args...].
        /// Returns 0 on success, 1 on a compile error or a runtime exception (reported to
        /// <paramref name="error"/>), 2 when the script does not exist.
        /// </summary>
        public int Run(string scriptPath, IReadOnlyList<string> scriptArgs, TextWriter output, TextWriter error)
        {
            ArgumentNullException.ThrowIfNull(scriptPath);
            ArgumentNullException.ThrowIfNull(scriptArgs);
            ArgumentNullException.ThrowIfNull(output);
            ArgumentNullException.ThrowIfNull(error);

            var script = Path.GetFullPath(scriptPath);
            if (!File.Exists(script))
            {
                error.WriteLine($"research run: script not found: {script}");
                return 2;
            }

            TorchRuntime.EnsureStarted();

            lock (Gate)
            {
                var oldOut = Console.Out;
                var oldErr = Console.Error;
                var scriptOut = TextWriter.Synchronized(output);
                var scriptErr = TextWriter.Synchronized(error);
                try
                {
                    Console.SetOut(scriptOut);
                    Console.SetError(scriptErr);
                    return Evaluate(script, scriptArgs, scriptOut, scriptErr);
                }
                finally
                {
                    scriptOut.Flush();
                    scriptErr.Flush();
                    Console.SetOut(oldOut);
                    Console.SetError(oldErr);
                }
            }
        }

        Shell.FsiEvaluationSession Start()
        {
            var argv = new List<string>
            {
                "fsi",
                "--noninteractive",
                "--nologo",
                "--gui-",
                "--multiemit+",
                "--debug+",
                "--optimize-",
                $"--define:{HostSymbol}",
            };
            var framework = FrameworkReferences();
            if (framework.Count > 0) argv.Add("--noframework");
            foreach (var reference in framework) argv.Add($"-r:{reference}");
            foreach (var reference in HostReferences()) argv.Add($"-r:{reference}");

            var config = Shell.FsiEvaluationSession.GetDefaultConfiguration(Shell.Settings.fsi, false);
            // fsi's own output (the "val x: int" echo of each binding) is not the script's output.
            var session = Shell.FsiEvaluationSession.Create(
                config, argv.ToArray(), new StringReader(""), _fsiOut, _fsiErr,
                collectible: FSharpOption<bool>.Some(false),
                legacyReferenceResolver: null);
            // The default configuration keeps its 'fsi' object private (FSharp.Compiler.Interactive.Settings.dll
            // ships with the SDK, not with FCS); bind the same object under the name scripts expect.
            session.AddBoundValue("fsi", Shell.Settings.fsi);
            return session;
        }

        int Evaluate(string script, IReadOnlyList<string> scriptArgs, TextWriter output, TextWriter error)
        {
            var session = _session ??= Start();
            var commandLine = new string[scriptArgs.Count + 1];
            commandLine[0] = script;
            for (var i = 0; i < scriptArgs.Count; i++) commandLine[i + 1] = scriptArgs[i];
            Shell.Settings.fsi.CommandLineArgs = commandLine;
            _fsiErr.GetStringBuilder().Clear();
            _fsiOut.GetStringBuilder().Clear();

            var (result, diagnostics) = session.EvalScriptNonThrowing(script).ToValueTuple();
            // fsi's own error stream: drop its "Stopped due to error" banner, the diagnostics follow.
            foreach (var line in _fsiErr.ToString().Split('\n'))
            {
                var l = line.TrimEnd('\r');
                if (l.Length > 0 && l != "Stopped due to error") error.WriteLine(l);
            }

            var errors = 0;
            foreach (var d in diagnostics)
            {
                if (d.Severity == FSharpDiagnosticSeverity.Error) errors++;
                else if (d.Severity != FSharpDiagnosticSeverity.Warning) continue;
                error.WriteLine(FormatDiagnostic(d));
            }

            if (result is FSharpChoice<Unit, Exception>.Choice2Of2 failed)
            {
                if (errors > 0) return 1;   // compile error: the diagnostics say it all
                if (Unwrap(failed.Item) is Research.Cluster.SweepSubmittedException submitted)
                {
                    // --no-wait: the sweep is on the cluster; the rest of the script has no results to work with.
                    output.WriteLine(submitted.Message);
                    return 0;
                }
                error.WriteLine(FormatException(failed.Item));
                return 1;
            }
            return errors > 0 ? 1 : 0;
        }

        public void Dispose()
        {
            (_session as IDisposable)?.Dispose();
            _session = null;
        }
    }

    static string FormatDiagnostic(FSharpDiagnostic d)
    {
        var severity = d.Severity == FSharpDiagnosticSeverity.Error ? "error" : "warning";
        return $"{d.FileName}({d.StartLine},{d.StartColumn + 1}): {severity} FS{d.ErrorNumber:0000}: {d.Message}";
    }

    static Exception Unwrap(Exception e)
    {
        while (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        return e;
    }

    static string FormatException(Exception e)
    {
        e = Unwrap(e);
        var text = new System.Text.StringBuilder();
        text.Append("Script failed: ").Append(e.GetType().FullName).Append(": ").AppendLine(e.Message);
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
            text.Append("  ---> ").Append(inner.GetType().FullName).Append(": ").AppendLine(inner.Message);
        if (e.StackTrace is { } trace)
        {
            // Frames from the script carry its file and line (multiemit + debug); keep the trace whole
            // but drop the evaluator's own frames beneath the script.
            foreach (var line in trace.Split('\n'))
            {
                var l = line.TrimEnd('\r');
                if (l.Contains(" System.Reflection.", StringComparison.Ordinal) || l.Contains("FSharp.Compiler.", StringComparison.Ordinal)) break;
                text.AppendLine(l);
            }
        }
        return text.ToString().TrimEnd();
    }

    /// <summary>
    /// The Research assemblies and every dependency of theirs that sits next to them (TorchSharp,
    /// tokenizers, ...), excluding FSharp.Core and the compiler, which the session brings itself.
    /// </summary>
    static IReadOnlyList<string> HostReferences()
    {
        var dirs = new[]
        {
            Path.GetDirectoryName(typeof(TorchRuntime).Assembly.Location),
            AppContext.BaseDirectory,
        }.Where(d => !string.IsNullOrEmpty(d)).Select(d => Path.GetFullPath(d!)).Distinct().ToArray();

        string? Find(string name)
        {
            foreach (var d in dirs)
            {
                var p = Path.Combine(d, name + ".dll");
                if (File.Exists(p)) return p;
            }
            return null;
        }

        var excluded = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
        {
            "FSharp.Core", "FSharp.Compiler.Service", "FSharp.DependencyManager.Nuget",
        };
        var roots = new List<string> { "Research.Core", "Research.FSharp", "TorchSharp" };
        foreach (var d in dirs)
            foreach (var f in Directory.EnumerateFiles(d, "Microsoft.ML.Tokenizers*.dll"))
                roots.Add(Path.GetFileNameWithoutExtension(f));

        var found = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var queue = new Queue<string>(roots);
        while (queue.Count > 0)
        {
            var name = queue.Dequeue();
            if (excluded.Contains(name) || found.ContainsKey(name)) continue;
            if (Find(name) is not { } path) continue;   // framework assembly or not shipped: the session has it
            found[name] = path;
            foreach (var dep in ReferencedAssemblies(path)) queue.Enqueue(dep);
        }
        return found.Values.ToArray();
    }

    /// <summary>
    /// What `dotnet fsi` compiles against: the reference assemblies of the running framework from the SDK's
    /// Microsoft.NETCore.App.Ref pack (the directory next to shared/ of this runtime), given with --noframework. Without
    /// them a hosted session sees only part of the framework (System.Collections' Dictionary and HashSet do not resolve),
    /// and adding implementation assemblies instead splits IEnumerable&lt;T&gt; in two, so that `HashSet([1; 2])` finds no
    /// overload. Empty when no pack is installed (a runtime without the SDK): the session's defaults apply.
    /// </summary>
    static IReadOnlyList<string> FrameworkReferences()
    {
        var runtimeDir = Path.GetDirectoryName(typeof(object).Assembly.Location);                 // .../shared/Microsoft.NETCore.App/10.0.12
        if (runtimeDir is null) return [];
        var version = Path.GetFileName(runtimeDir);
        var root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(runtimeDir)));  // the dotnet root
        if (root is null) return [];
        var packs = Path.Combine(root, "packs", "Microsoft.NETCore.App.Ref");
        if (!Directory.Exists(packs)) return [];
        var pack = Directory.Exists(Path.Combine(packs, version)) ? Path.Combine(packs, version)
            : Directory.GetDirectories(packs).Where(d => Path.GetFileName(d).StartsWith(version.Split('.')[0] + ".", StringComparison.Ordinal))
                .OrderByDescending(d => d, StringComparer.Ordinal).FirstOrDefault();
        var tfm = $"net{Environment.Version.Major}.{Environment.Version.Minor}";
        var refDir = pack is null ? null : Path.Combine(pack, "ref", tfm);
        return refDir is not null && Directory.Exists(refDir) ? Directory.GetFiles(refDir, "*.dll").Order(StringComparer.Ordinal).ToArray() : [];
    }

    static IEnumerable<string> ReferencedAssemblies(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var pe = new PEReader(stream);
            if (!pe.HasMetadata) return [];
            var md = pe.GetMetadataReader();
            return md.AssemblyReferences.Select(h => md.GetString(md.GetAssemblyReference(h).Name)).ToArray();
        }
        catch (BadImageFormatException)
        {
            return [];
        }
    }
}
