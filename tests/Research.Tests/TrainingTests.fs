module Research.Tests.TrainingTests

open Expecto

[<Tests>]
let tests = testList "Training" []
