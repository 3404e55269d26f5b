module Research.Tests.MergeTests

open Expecto

[<Tests>]
let tests = testList "Merge" []
