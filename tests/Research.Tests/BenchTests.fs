module Research.Tests.BenchTests

open Expecto

[<Tests>]
let tests = testList "Bench" []
