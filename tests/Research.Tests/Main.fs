module Research.Tests.Main

open Expecto
open Expecto.Impl

/// Runs every [<Tests>] value of this assembly and ends with one line "N passed, N failed",
/// which CI reads. Expecto's own CLI flags (--filter, --summary, --sequenced...) still work.
[<EntryPoint>]
let main argv =
    Research.Runtime.init ()
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
    let code = runTestsInAssemblyWithCLIArgs (CLIArguments.Printer printer :: CLIArguments.No_Spinner :: colours) argv
    let passed, failed = counts
    // The slowest tests, so that the suite's 15-minute budget is watched where it is spent.
    if durations.Count > 0 then
        printfn "\nslowest tests:"
        for name, d in durations |> Seq.sortByDescending snd |> Seq.truncate 15 do
            printfn "  %6.1f s  %s" d.TotalSeconds name
    // Written to the raw stdout stream, past Expecto's console writer (which pads lines), and after
    // a newline since Expecto leaves a colour-reset escape at the end: the line stands alone.
    System.Console.Out.Flush()
    use raw = System.Console.OpenStandardOutput()
    let line = System.Text.Encoding.UTF8.GetBytes($"\n{passed} passed, {failed} failed\n")
    raw.Write(line, 0, line.Length)
    raw.Flush()
    code
