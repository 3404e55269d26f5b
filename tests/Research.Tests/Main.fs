module Research.Tests.Main

open System
open Expecto
open Expecto.Impl

/// The test lists that train whole pipelines, run scripts, notebooks or other processes, install Debian or npm
/// packages, or compare with python3/node references: what `--fast` leaves out.
let integration =
    set [ "Pipeline"; "Experiments"; "Cluster"; "Reproductions"; "ReproAlign"; "ReproData"; "ReproMerge"; "Notebooks"; "Figures"
          "Docs"; "Bench"; "Suite"; "Cli"; "RunCommand"; "ScriptHost"; "Families"; "FamilyStages"; "HfTokenizer"; "ChatMask"
          "CheckpointTools"; "Jinja"; "Selection"; "World"; "Provenance"; "GrpoStage"; "ReliabilityKills"; "GrpoResume"; "UdaPipeline"; "RewardStage"; "PairsStage" ]

/// Runs every [<Tests>] value of this assembly and ends with one line "N passed, N failed",
/// which CI reads. Expecto's own CLI flags (--filter, --summary, --sequenced...) still work;
/// `--fast` runs the unit tests only (every list not in `integration`).
[<EntryPoint>]
let main argv =
    Research.Runtime.init ()
    // Lists run side by side (Expecto's workers): each torch computation, here and in the child
    // processes the tests start (which read $RESEARCH_THREADS), keeps to one thread so that they do not oversubscribe.
    if String.IsNullOrEmpty(Environment.GetEnvironmentVariable "RESEARCH_THREADS") then
        Environment.SetEnvironmentVariable("RESEARCH_THREADS", "1")
    Research.Backend.Devices.SetThreads(System.Nullable())
    let fast = argv |> Array.contains "--fast"
    let argv = argv |> Array.filter ((<>) "--fast")
    let all = testFromThisAssembly () |> Option.defaultWith (fun () -> failwith "no [<Tests>] in this assembly")
    let tests = if fast then all |> Test.filter "." (fun path -> not (integration.Contains(List.head path))) else all
    let mutable counts = (0, 0)
    let durations = System.Collections.Concurrent.ConcurrentBag<string * System.TimeSpan>()
    let printer =
        { defaultConfig.printer with
            passed = fun name duration ->
                durations.Add((name, duration))
                defaultConfig.printer.passed name duration
            summary = fun config summary ->
                async {
                    do! defaultConfig.printer.summary config summary
                    counts <- (summary.passed.Length, summary.failed.Length + summary.errored.Length)
                } }
    let colours = if System.Console.IsOutputRedirected then [ CLIArguments.Colours 0 ] else []
    // One worker more than the cores: the lists that wait on child processes (Slurm, Chromium, scripts) leave a core
    // idle while they wait. At most one of the workers trains in this process (TestUtil.Groups.inProcess).
    let workers = [ CLIArguments.Parallel_Workers(Environment.ProcessorCount + 1) ]
    let code = runTestsWithCLIArgs (CLIArguments.Printer printer :: CLIArguments.No_Spinner :: colours @ workers) argv tests
    let passed, failed = counts
    // The slowest tests, so that the suite's 15-minute budget is watched where it is spent.
    if durations.Count > 0 then
        printfn "\nslowest tests:"
        for name, d in durations |> Seq.sortByDescending snd |> Seq.truncate 40 do
            printfn "  %6.1f s  %s" d.TotalSeconds name
    // Written to the raw stdout stream, past Expecto's console writer (which pads lines), and after
    // a newline since Expecto leaves a colour-reset escape at the end: the line stands alone.
    System.Console.Out.Flush()
    use raw = System.Console.OpenStandardOutput()
    let line = System.Text.Encoding.UTF8.GetBytes($"\n{passed} passed, {failed} failed\n")
    raw.Write(line, 0, line.Length)
    raw.Flush()
    code
