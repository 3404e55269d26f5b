module Research.Tests.Main

open Expecto

[<EntryPoint>]
let main argv =
    Research.Runtime.init ()
    runTestsInAssemblyWithCLIArgs [] argv
