// Smoke test: `dotnet fsi scripts/hello.fsx` (after `dotnet build -c Release src/Research.Cli`)
// or `research run scripts/hello.fsx`.
#load "research.fsx"

open TorchSharp

let t = torch.arange(1L, 11L).to_type(torch.float32)
let sum = t.sum().item<float32>()
printfn "torch ok: %g" sum
printfn "%s" Research.Backend.TorchRuntime.Report
