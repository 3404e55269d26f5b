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
    let code = runTestsInAssemblyWithCLIArgs (CLIArguments.Printer printer :: colours) argv
    let passed, failed = counts
    printfn "%d passed, %d failed" passed failed
    code
