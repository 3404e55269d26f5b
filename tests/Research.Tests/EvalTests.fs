module Research.Tests.EvalTests

open Expecto

[<Tests>]
let tests = testList "Eval" []
