using System.Diagnostics;

namespace Research.Cluster;

/// <summary>Slurm's own commands (sbatch, squeue, scancel), run as processes; their errors are passed on whole.</summary>
public static class Slurm
{
    /// <summary>Submits a batch script; returns the job id (for an array, the array's id).</summary>
    public static string Submit(IReadOnlyList<string> sbatchArgs, string script)
    {
        var (code, output, error) = Execute("sbatch", [.. sbatchArgs, script]);
        if (code != 0) throw new InvalidOperationException($"sbatch failed (exit {code}): {error.Trim()}{Hint(error)}");
        // --parsable prints "jobid" or "jobid;cluster"
        var id = output.Trim().Split(';')[0];
        if (id.Length == 0 || !id.All(char.IsAsciiDigit)) throw new InvalidOperationException($"sbatch printed no job id: '{output.Trim()}'");
        return id;
    }

    /// <summary>
    /// Every job Slurm still knows (running, pending and recently ended), array elements one per line, as
    /// job id ("12_3") → state ("RUNNING", "COMPLETED", "CANCELLED"...).
    /// </summary>
    public static IReadOnlyDictionary<string, string> States()
    {
        var (code, output, error) = Execute("squeue", ["-h", "-r", "--states=all", "-o", "%i|%T"]);
        if (code != 0) throw new InvalidOperationException($"squeue failed (exit {code}): {error.Trim()}{Hint(error)}");
        var states = new Dictionary<string, string>();
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split('|');
            if (parts.Length == 2) states[parts[0]] = parts[1];
        }
        return states;
    }

    public static void Cancel(string jobId)
    {
        var (code, _, error) = Execute("scancel", [jobId]);
        if (code != 0) throw new InvalidOperationException($"scancel {jobId} failed (exit {code}): {error.Trim()}");
    }

    /// <summary>Slurm states after which an element will not run again by itself.</summary>
    public static bool Ended(string state) => state is "COMPLETED" or "FAILED" or "CANCELLED" or "TIMEOUT" or "NODE_FAIL"
        or "OUT_OF_MEMORY" or "PREEMPTED" or "BOOT_FAIL" or "DEADLINE" or "REVOKED" or "SPECIAL_EXIT";

    static string Hint(string error) =>
        error.Contains("Unable to contact slurm controller", StringComparison.OrdinalIgnoreCase) || error.Contains("SLURM_CONF", StringComparison.Ordinal)
            ? " (is slurmctld running, and does SLURM_CONF point at its slurm.conf?)" : "";

    static (int Code, string Output, string Error) Execute(string command, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"{command} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{command} not found ({e.Message}): the Slurm backend needs Slurm's client commands on PATH", e);
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            return (process.ExitCode, output.Result, error.Result);
        }
    }
}
