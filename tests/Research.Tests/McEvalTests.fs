module Research.Tests.McEvalTests

open Expecto

[<Tests>]
let tests = testList "McEval" []
