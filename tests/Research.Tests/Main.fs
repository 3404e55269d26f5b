module Research.Tests.Main

open Expecto
open Expecto.Impl

/// Runs every [<Tests>] value of this assembly and ends with one line "N passed, N failed",
/// which CI reads. Expecto's own CLI flags (--filter, --summary, --sequenced...) still work.
[<EntryPoint>]
let main argv =
    Research.Runtime.init ()
    let mutable counts = (0, 0)
    let printer =
        { defaultConfig.printer with
            summary = fun config summary ->
                async {
                    do! defaultConfig.printer.summary config summary
                    counts <- (summary.passed.Length, summary.failed.Length + summary.errored.Length)
                } }
    let colours = if System.Console.IsOutputRedirected then [ CLIArguments.Colours 0 ] else []
    let code = runTestsInAssemblyWithCLIArgs (CLIArguments.Printer printer :: CLIArguments.No_Spinner :: colours) argv
    let passed, failed = counts
    // Written to the raw stdout stream, past Expecto's console writer (which pads lines), and after
    // a newline since Expecto leaves a colour-reset escape at the end: the line stands alone.
    System.Console.Out.Flush()
    use raw = System.Console.OpenStandardOutput()
    let line = System.Text.Encoding.UTF8.GetBytes($"\n{passed} passed, {failed} failed\n")
    raw.Write(line, 0, line.Length)
    raw.Flush()
    code
