module Research.Tests.AlignTests

open Expecto

[<Tests>]
let tests = testList "Align" []
