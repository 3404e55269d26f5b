module Research.Tests.BackendTests

open Expecto

[<Tests>]
let tests = testList "Backend" []
