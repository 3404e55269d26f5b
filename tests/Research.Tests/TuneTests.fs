module Research.Tests.TuneTests

open Expecto

[<Tests>]
let tests = testList "Tune" []
