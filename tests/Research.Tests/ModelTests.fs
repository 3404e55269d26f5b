module Research.Tests.ModelTests

open Expecto

[<Tests>]
let tests = testList "Model" []
