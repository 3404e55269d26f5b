module Research.Tests.SafetensorsTests

open Expecto

[<Tests>]
let tests = testList "Safetensors" []
