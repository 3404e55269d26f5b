module Research.Tests.CliTests

open Expecto

[<Tests>]
let tests = testList "Cli" []
