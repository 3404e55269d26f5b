module Research.Tests.DistillTests

open Expecto

[<Tests>]
let tests = testList "Distill" []
